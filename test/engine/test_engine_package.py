"""``pixellm_ros.engine`` stays light to import, and offers the model's load options (for the ROS layer)."""

from __future__ import annotations

import subprocess
import sys

import pixellm_ros.engine as engine_package
from pixellm_ros.model import load_options


def test_importing_the_engine_package_loads_neither_torch_nor_the_model() -> None:
    code = (
        "import sys, pixellm_ros.engine\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'pixellm_ros.model') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_load_options_are_the_models_own() -> None:
    for name in ("resolve_device", "resolve_dtype", "resolve_load_in", "resolve_load_options", "LoadOptionError",
                 "LoadOptions", "DTYPE_NAMES", "LOAD_IN_CHOICES"):
        assert getattr(engine_package, name) is getattr(load_options, name), name
    assert set(engine_package.__all__) >= {"resolve_device", "LoadOptionError", "PixelLMEngine"}
