"""Where the package's shipped files are: the source tree's ``config/``, else the installed share.

A leaf module (nothing of ours is imported here), so the transport set-up, the runner and the
nodes can all find ``config/*.yaml`` / ``config/*.xml`` without importing each other.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "pixellm_ros"
PARAMS_FILE_NAME = "pixellm.yaml"


def package_config_file(name: str) -> Path:
    """config/NAME of the source tree, else the installed share/pixellm_ros/config copy.

    Raises ament_index_python's PackageNotFoundError when neither exists.
    """
    source = Path(__file__).resolve().parents[2] / "config" / name
    if source.is_file():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE)) / "config" / name


def default_params_file() -> Path:
    """The shipped node parameters, config/pixellm.yaml (see ``package_config_file``)."""
    return package_config_file(PARAMS_FILE_NAME)
