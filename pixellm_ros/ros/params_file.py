"""The parameters a node's command line gives it (``--ros-args --params-file F -p name:=value``),
read the way rcl reads them, for what rcl does not say:

- a parameters file that is missing or not valid YAML: one line naming the file and the line of
  the error (``command_line_problem``), where rcl ends the process with a 25-line RCLError traceback
- a file that is not a mapping of node names, or that sets nothing for this node (it is keyed by
  another node's name, ``pixellm_node:`` for a node named ``pixellm``): a warning naming the node
  names the file holds (``files_setting_nothing``), where rcl ignores it without a word
- where a parameter's value came from (``value_sources``: ``-p name:=value`` or ``FILE line N``),
  for the start-up errors that name a bad value

rcl's rules followed: ``--params-file`` and ``-p`` apply in command-line order, a later one wins;
a file maps node names (``/**``, ``/*``, ``name``, ``/ns/name``) to ``ros__parameters``, whose
nested keys are joined with dots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Sequence

import yaml

ROS_ARGS, ROS_ARGS_END = "--ros-args", "--"
PARAMS_FILE_FLAGS = ("--params-file",)
PARAM_FLAGS = ("-p", "--param")
PARAMETERS_KEY = "ros__parameters"


def ros_arguments(argv: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(flag, value) of every ``--params-file`` and ``-p`` inside the ``--ros-args`` sections, in order."""
    inside = False
    tokens = list(argv)
    for index, token in enumerate(tokens):
        if token == ROS_ARGS:
            inside = True
        elif token == ROS_ARGS_END:
            inside = False
        elif inside and token in PARAMS_FILE_FLAGS + PARAM_FLAGS and index + 1 < len(tokens):
            yield token, tokens[index + 1]


def params_files(argv: Sequence[str]) -> list[Path]:
    return [Path(value) for flag, value in ros_arguments(argv) if flag in PARAMS_FILE_FLAGS]


def command_line_problem(argv: Sequence[str]) -> str | None:
    """One line for the first parameters file that is missing or not valid YAML, else None."""
    for path in params_files(argv):
        if not path.is_file():
            return f"parameters file not found: {path}"
        try:
            yaml.safe_load(path.read_text())
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = ", ".join(str(part) for part in (error.context, error.problem) if part)
            return f"parameters file {path} is not valid YAML{where}: {what}"
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as error:
            return f"parameters file {path} cannot be read: {error}"
    return None


def rcl_error_line(text: str) -> str:
    """rcl's error for a command line it could not read, as one line without its source locations."""
    found = re.search(r"Couldn't parse params file: '--params-file (.+?)'\. Error: (.*)", text, re.DOTALL)
    if found is None:
        return "cannot start: " + " ".join(text.split())
    detail = re.sub(r",? at [^,\s]+:\d+", "", found.group(2))
    return f"parameters file {found.group(1)} cannot be read: {' '.join(detail.split())}"


def node_sections(path: Path) -> dict[str, dict[str, int]] | None:
    """The file's node names -> {dotted parameter name: line}; None when it is not a mapping."""
    root = yaml.compose(path.read_text())
    if not isinstance(root, yaml.MappingNode):
        return None
    sections: dict[str, dict[str, int]] = {}
    for key, value in root.value:
        names: dict[str, int] = {}
        if isinstance(value, yaml.MappingNode):
            for inner_key, inner in value.value:
                if inner_key.value == PARAMETERS_KEY:
                    _flatten(inner, "", names)
        sections[str(key.value)] = names
    return sections


def _flatten(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        name = f"{prefix}{key.value}"
        if isinstance(value, yaml.MappingNode):
            _flatten(value, name + ".", out)
        else:
            out[name] = key.start_mark.line + 1


def node_name_matches(key: str, fully_qualified_name: str) -> bool:
    """rcl's rule for a parameters file's node name: ``/**`` any namespaces, ``*`` one name."""
    key = key if key.startswith("/") else "/" + key
    pattern = "".join("(/[^/]+)*" if part == "**" else "/[^/]+" if part == "*" else "/" + re.escape(part)
                      for part in key.split("/")[1:])
    return re.fullmatch(pattern, fully_qualified_name) is not None


def _readable_sections(path: Path) -> dict[str, dict[str, int]] | None:
    try:
        return node_sections(path)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return {}  # command_line_problem says why, before rcl reads it


def files_setting_nothing(argv: Sequence[str], fully_qualified_name: str) -> list[str]:
    """A warning for each parameters file that sets nothing for the node, naming what it holds."""
    warnings = []
    for path in params_files(argv):
        sections = _readable_sections(path)
        if sections is None:
            warnings.append(f"parameters file {path} sets nothing: it is not a mapping of node names to "
                            f"{PARAMETERS_KEY}")
        elif sections and not any(node_name_matches(key, fully_qualified_name) for key in sections):
            warnings.append(f"parameters file {path} sets nothing for {fully_qualified_name}: it holds parameters "
                            f"for {', '.join(sections)}; key them by /** or {fully_qualified_name}")
    return warnings


def value_sources(argv: Sequence[str], fully_qualified_name: str) -> dict[str, str]:
    """Where each parameter given on the command line got its value: ``-p name:=value`` or
    ``FILE line N`` (the last one wins, as in rcl)."""
    sources: dict[str, str] = {}
    for flag, value in ros_arguments(argv):
        if flag in PARAM_FLAGS:
            name = value.split(":=", 1)[0]
            sources[name] = f"{flag} {value}"
            continue
        for key, names in (_readable_sections(Path(value)) or {}).items():
            if node_name_matches(key, fully_qualified_name):
                sources.update({name: f"{value} line {line}" for name, line in names.items()})
    return sources
