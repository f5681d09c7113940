"""The token strings and the image placeholder id are declared once, in model/constants.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pixellm_ros.model.constants import (
    IM_END_TOKEN,
    IM_START_TOKEN,
    IMAGE_TOKEN,
    IMAGE_TOKEN_INDEX,
    added_token_names,
    seg_group_text,
    seg_token_names,
)

PACKAGE = Path(__file__).resolve().parents[2] / "pixellm_ros"
CONSTANTS = PACKAGE / "model" / "constants.py"
SEG_TOKEN = re.compile(r"\[SEG\d*\]")


def test_released_names() -> None:
    assert (IMAGE_TOKEN, IM_START_TOKEN, IM_END_TOKEN, IMAGE_TOKEN_INDEX) == ("<image>", "<im_start>", "<im_end>", -200)
    assert seg_token_names(1) == ["[SEG]"]
    assert added_token_names(6) == ["[SEG0]", "[SEG1]", "[SEG2]", "[SEG3]", "[SEG4]", "[SEG5]", "<im_start>", "<im_end>"]
    assert seg_group_text() == "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]"


def _literals(path: Path) -> list[tuple[int, object]]:
    """(line, value) of the string and negative-number literals of a module, docstrings excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[tuple[int, object]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            found.append((node.lineno, -node.operand.value))
    return found


def test_no_module_writes_the_token_strings_itself() -> None:
    tokens = {IMAGE_TOKEN, IM_START_TOKEN, IM_END_TOKEN}
    copies = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == CONSTANTS:
            continue
        for line, value in _literals(path):
            if value == IMAGE_TOKEN_INDEX or (isinstance(value, str) and (
                any(token in value for token in tokens) or SEG_TOKEN.search(value)
            )):
                copies.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}")
    assert copies == [], "use pixellm_ros.model.constants instead:\n" + "\n".join(copies)
