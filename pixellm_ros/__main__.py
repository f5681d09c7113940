"""``python -m pixellm_ros <command>``: the same as the ``pixellm-ros`` console command."""

import sys

from pixellm_ros.cli import main

if __name__ == "__main__":  # not when multiprocessing's spawn re-imports the main module
    sys.exit(main())
