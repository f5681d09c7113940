"""`python -m pixellm_ros.training ...`: the same as `pixellm-ros train ...`."""

from pixellm_ros.training.cli import main

raise SystemExit(main())
