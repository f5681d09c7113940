"""The DDS transport settings the executables start with: room for camera-sized messages.

Fast DDS (ROS 2's default middleware) carries same-host messages through a shared-memory segment
of the writer's process, 512 KB by default. A larger message is cut into fragments that overwrite
each other there before a busy reader has copied them, and a best-effort subscriber (the node's
camera subscription, as every perception node's) loses most images over ~0.5 MB: measured on this
project's 2-core test machine, a 640x480 rgb8 camera at 10 Hz delivered 45 of 80 frames, 1280x720
28 of 80 (ros2/rmw_fastrtps#739). That starved the node of frames for seconds under load.

``config/fastdds_large_frames.xml`` gives the process a 16 MB segment (79 of 80 frames in both
cases; each process holding it maps a 16 MB segment). ``use_large_frames_profile`` points Fast DDS at it through the environment before rclpy
creates the process's DDS participant, unless the user has chosen a profile file of their own or
runs another middleware. Child processes inherit it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

PROFILE_FILE_NAME = "fastdds_large_frames.xml"
# Fast DDS 2.x+ reads the first; older releases (and many robots' setups) still use the second.
PROFILE_ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
FAST_DDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def large_frames_profile() -> Path | None:
    """The shipped profile file, or None where the package's config folder cannot be found."""
    from .runner import package_config_file

    try:
        path = package_config_file(PROFILE_FILE_NAME)
    except Exception:  # noqa: BLE001 - no ament index / not installed: run with Fast DDS's defaults
        return None
    return path if path.is_file() else None


def use_large_frames_profile(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Set FASTDDS_DEFAULT_PROFILES_FILE to the shipped profile where nobody chose one.

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
        env[PROFILE_ENV_VARS[0]] = str(profile)
    return profile
