"""``python -m pixellm_ros <command>``: the same as the ``pixellm-ros`` console command."""

import sys

from pixellm_ros.cli import main

sys.exit(main())
