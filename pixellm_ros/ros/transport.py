"""The DDS transport settings the executables start with: room for camera-sized messages.

Fast DDS (ROS 2's default middleware) carries same-host messages through a shared-memory segment
of the writer's process, 512 KB by default. A larger message is cut into fragments that overwrite
each other there before a busy reader has copied them, and a best-effort subscriber (the node's
camera subscription, as every perception node's) loses most images over ~0.5 MB: measured on this
project's 2-core test machine, a 640x480 rgb8 camera at 10 Hz delivered 45 of 80 frames, 1280x720
28 of 80 (ros2/rmw_fastrtps#739). The likely cause of the demo's one observed flake: the node had
no frame for 3 s after its model load while the camera published throughout.

``config/fastdds_large_frames.xml`` gives the process a 16 MB segment (79 of 80 frames in both
cases; each process holding it maps 16 MB of /dev/shm). ``use_large_frames_profile`` points Fast
DDS at it through the environment before rclpy creates the process's DDS participant, unless the
user has chosen a profile file of their own or runs another middleware. Child processes inherit it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import MutableMapping

from .package_files import package_config_file

PROFILE_FILE_NAME = "fastdds_large_frames.xml"
# Fast DDS 3 (rmw_fastrtps 9+, Kilted on) reads the first and warns that the second is deprecated;
# Fast DDS 2 (Humble, Jazzy) reads only the second.
PROFILE_ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
FAST_DDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
FIRST_FAST_DDS_3_RMW_MAJOR = 9


def profile_env_var(rmw_fastrtps_version: str | None) -> str:
    """The variable the installed Fast DDS reads, from rmw_fastrtps_cpp's version (None: unknown)."""
    try:
        major = int((rmw_fastrtps_version or "").split(".")[0])
    except ValueError:
        return PROFILE_ENV_VARS[0]  # unknown: assume a current release
    return PROFILE_ENV_VARS[0] if major >= FIRST_FAST_DDS_3_RMW_MAJOR else PROFILE_ENV_VARS[1]


def installed_rmw_fastrtps_version() -> str | None:
    """rmw_fastrtps_cpp's version from its package.xml in the ament index, or None."""
    try:
        from ament_index_python.packages import get_package_share_directory

        text = (Path(get_package_share_directory("rmw_fastrtps_cpp")) / "package.xml").read_text()
    except Exception:  # noqa: BLE001 - not installed / no ament index
        return None
    found = re.search(r"<version>\s*([^<\s]+)\s*</version>", text)
    return found.group(1) if found else None


def large_frames_profile() -> Path | None:
    """The shipped profile file, or None where the package's config folder cannot be found."""
    try:
        path = package_config_file(PROFILE_FILE_NAME)
    except Exception:  # noqa: BLE001 - no ament index / not installed: run with Fast DDS's defaults
        return None
    return path if path.is_file() else None


def use_large_frames_profile(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Point the installed Fast DDS's profile variable at the shipped profile where nobody chose one.

    Leaves the environment alone when either profile variable already names a file (a user's
    own profile wins; an empty value counts as unset, as Fast DDS cannot load it either), when
    RMW_IMPLEMENTATION names a middleware other than Fast DDS, or when the file cannot be found.
    Must run before rclpy.init creates the process's participant.

    Returns:
        The profile file now in the environment, or None when nothing was set.
    """
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in PROFILE_ENV_VARS):
        return None
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw and rmw not in FAST_DDS_RMWS:
        return None
    profile = large_frames_profile()
    if profile is not None:
        env[profile_env_var(installed_rmw_fastrtps_version())] = str(profile)
    return profile
