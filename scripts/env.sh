# Source this (bash) to run the project from the source tree: the venv's ROS 2, the colcon-built
# interfaces in install/, and the source package first on the path (so edits need no rebuild).
_pixellm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_pixellm_venv="$_pixellm_root/.venv"
_pixellm_site="$_pixellm_venv/lib/python3.11/site-packages"
export VIRTUAL_ENV="$_pixellm_venv"
export PATH="$_pixellm_venv/bin:$PATH"
export AMENT_PREFIX_PATH="$_pixellm_root/install:$_pixellm_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# The ros-* wheels' .pth hook would re-exec every Python start to set this; do it once here.
_pixellm_ld="$_pixellm_root/install/lib:$_pixellm_venv/lib"
for _d in "$_pixellm_site"/ros_*.libs; do _pixellm_ld="$_pixellm_ld:$_d"; done
export LD_LIBRARY_PATH="$_pixellm_ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export PYTHONPATH="$_pixellm_root:$_pixellm_root/install/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset _pixellm_root _pixellm_venv _pixellm_site _pixellm_ld _d
