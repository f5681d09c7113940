"""Make chosen top-level modules unimportable, to check a run needs only what a bare machine has.

Put this folder first on PYTHONPATH and name the modules in PIXELLM_BLOCK_IMPORTS (comma-separated
top-level names, e.g. "rclpy,pycocotools,matplotlib"): importing one of them, or anything under
it, raises ModuleNotFoundError as on a machine without it. `scripts/device_check_here.sh` runs the
device script this way (the GPU machine has no ROS and no pycocotools).
"""

from __future__ import annotations

import importlib.abc
import os
import sys

_BLOCKED = frozenset(name.strip() for name in os.environ.get("PIXELLM_BLOCK_IMPORTS", "").split(",") if name.strip())


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".", 1)[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by PIXELLM_BLOCK_IMPORTS)", name=fullname)
        return None


if _BLOCKED:
    sys.meta_path.insert(0, _Blocker())
