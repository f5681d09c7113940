"""pixellm_ros.spatial is a leaf: numpy, OpenCV, scipy and the standard library, nothing else of ours
(and so nothing of ROS or torch); world/geometry.py likewise imports only the world."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pixellm_ros"
THIRD_PARTY = {"numpy", "cv2", "scipy"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_spatial_imports_only_numpy_opencv_scipy_and_itself() -> None:
    files = sorted((PACKAGE / "spatial").glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith("pixellm_ros"):
                assert name.startswith("pixellm_ros.spatial"), (path.name, name)
            else:
                assert top in THIRD_PARTY or top in sys.stdlib_module_names, (path.name, name)


def test_world_geometry_imports_only_the_world() -> None:
    for name in _imports(PACKAGE / "world" / "geometry.py"):
        if name.startswith("pixellm_ros"):
            assert name.startswith("pixellm_ros.world"), name
