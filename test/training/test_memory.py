"""The training process's memory settings (``training.memory``): each in a fresh Python, since they are
process-wide and the first must come before torch's import."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixellm_ros.training import cli as train_cli
from pixellm_ros.training.memory import take_memory

# allocates and frees a 64 MB and an 8 MB buffer 10 times (torch's ones, so every page is touched)
CHURN = """
import json, resource, sys
from pixellm_ros.training.memory import take_memory
taken = take_memory(sys.argv[1])
import torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a, b = torch.ones(16 << 20), torch.ones(2 << 20)
    del a, b
print(json.dumps({"taken": taken, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before,
                  "late": take_memory("pages")}))
"""


def _churn(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"})
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and transparent huge pages are Linux's")
def test_the_settings_cut_the_page_faults_of_freed_and_retaken_buffers() -> None:
    default, both = _churn("default"), _churn("both")
    assert default["taken"] == [] and both["taken"] == ["pages", "keep"]
    # 10 x 72 MB of fresh 4 KB pages is ~184,000 faults; kept memory in 2 MB pages needs a few hundred
    assert default["faults"] > 100_000 and both["faults"] < default["faults"] / 10
    assert both["late"] == []  # once torch is imported, "pages" is not taken (torch read it already)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_train_takes_its_memory_settings_before_anything_else(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pixellm-ros train`'s first act; here torch is imported already, so only glibc's setting is taken
    (in this test process too: it changes no result)."""
    import torch  # noqa: F401  (whatever ran before: this process's torch is started, "pages" comes too late)

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    (tmp_path / "settings.json").write_text("{}")  # a run is there: train stops before any work
    assert train_cli.run(parser.parse_args(["--out", str(tmp_path), "--memory", "both"])) == 2
    assert capsys.readouterr().out.splitlines()[0] == "memory: keep"
    assert parser.parse_args(["--out", "x"]).memory == "default"
    assert take_memory("default") == []
