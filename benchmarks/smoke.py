"""What every benchmark script shares for the test suite: a smoke size and one line of figures.

``--smoke`` runs a script at toy sizes in seconds (test/test_benchmarks.py runs every script of
this folder that way, so a benchmark that breaks fails the suite); its figures mean nothing then.
``report(figures)`` prints the run's figures as the last line of stdout, ``RESULT {json}``, which
the test parses (``read_result`` reads it back, for a benchmark that runs another).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any, Mapping

RESULT_PREFIX = "RESULT "
SMOKE_HELP = "toy sizes, seconds: checks the script runs end to end (the test suite does this); figures meaningless"


def add_smoke_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)


def report(figures: Mapping[str, Any]) -> None:
    """Print the figures as one JSON line (non-finite floats as null, so that any JSON reader parses it)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    print(RESULT_PREFIX + json.dumps(clean(dict(figures)), allow_nan=False, default=float), flush=True)


def read_result(stdout: str) -> dict[str, Any]:
    """The figures of a benchmark's output (its last line, as ``report`` printed it)."""
    last = stdout.strip().splitlines()[-1]
    if not last.startswith(RESULT_PREFIX):
        raise ValueError(f"no RESULT line at the end of:\n{stdout[-2000:]}")
    return json.loads(last[len(RESULT_PREFIX):])
