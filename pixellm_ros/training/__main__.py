"""`python -m pixellm_ros.training ...`: the same as `pixellm-ros train ...`."""

from pixellm_ros.training.cli import main

if __name__ == "__main__":  # not when multiprocessing's spawn re-imports the main module
    raise SystemExit(main())
