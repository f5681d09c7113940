"""At SIGTERM every accepted goal's result reaches its action client, also while a large full-frame
mask result is going out (issue 25: 3 of 7 runs lost a queued goal's result, the drain waited a
fixed 0.5 s); an idle SIGINT logs nothing but the shutdown.

Over real DDS, node processes started by the runner: a goal with a 2000x1500 image whose answer
carries 13 full-frame masks (a 39 MB result) runs, three goals wait behind it, SIGTERM comes
during its last tokens, so that its result goes out while the node shuts down; 20 runs, a few node
processes at a time.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult
from support.dds import NodeProcess, RosClient, rgb_image_msg, wait_until

RUNS = 20
AT_ONCE = 4  # node processes shutting down side by side (the machine's cores are shared)
LARGE = (1500, 2000)  # H, W of the running goal's image
TOKENS = 160  # the loop model's answer: a target every 12 tokens, each a full-frame mask of LARGE
SIGNAL_AT = 120  # tokens generated when SIGTERM is sent
QUEUED = 3


def large_result_run(run: int, client: RosClient, domain_id: int, model_dir: Path, logs: Path) -> dict[str, object]:
    """One node process: a large goal running, QUEUED goals waiting, SIGTERM during its last tokens.

    Returns what each goal's client got: its result's status, or the reason it got none.
    """
    name = f"pixellm_sigterm_{run}"
    process = NodeProcess(domain_id, name, {
        "model.path": str(model_dir), "model.device": "cpu", "queue_size": 4, "max_image_age_s": 0.0,
        "generation.max_new_tokens": TOKENS, "output.mask_format": "full", "diagnostics_period_s": 0.0,
    }, logs / f"{name}.log")
    try:
        process.wait_active(client, timeout=240)
        rng = np.random.default_rng(run)
        large = rgb_image_msg(rng.integers(0, 256, (*LARGE, 3), dtype=np.uint8), client.now(), "cam")
        small = rgb_image_msg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), client.now(), "cam")
        late = threading.Event()

        def on_feedback(msg: object) -> None:
            if msg.feedback.generated_tokens >= SIGNAL_AT:
                late.set()

        sent = {"large": client.send_goal(name, SegmentAction.Goal(image=large, instruction="the large one"),
                                          on_feedback)}
        for k in range(QUEUED):
            sent[f"queued {k}"] = client.send_goal(name, SegmentAction.Goal(image=small, instruction=f"queued {k}"))
        assert wait_until(lambda: all(f.done() for f in sent.values()), 60), "goals not acknowledged"
        handles = {key: future.result() for key, future in sent.items()}
        assert all(handle.accepted for handle in handles.values())
        results = {key: handle.get_result_async() for key, handle in handles.items()}  # asked before the signal
        assert late.wait(120), f"the large goal's answer never reached {SIGNAL_AT} tokens"
        assert not results["large"].done()
        process.process.send_signal(signal.SIGTERM)
        code = process.process.wait(120)
        wait_until(lambda: all(f.done() for f in results.values()), 10)
        got: dict[str, object] = {"exit code": code}
        for key, future in results.items():
            got[key] = future.result().result.result.status if future.done() else "no result"
        got["large targets"] = len(results["large"].result().result.result.targets) if results["large"].done() else 0
        got["log"] = process.log_path.read_text()
        return got
    finally:
        process.stop()


def test_at_sigterm_every_goal_gets_its_result_while_a_large_full_mask_result_goes_out(
        client: RosClient, domain_id: int, loop_model_dir: Path, tmp_path: Path) -> None:
    with ThreadPoolExecutor(AT_ONCE) as pool:
        runs = list(pool.map(lambda run: large_result_run(run, client, domain_id, loop_model_dir, tmp_path),
                             range(RUNS)))
    lost = [(run, key) for run, got in enumerate(runs) for key, value in got.items() if value == "no result"]
    goals = RUNS * (1 + QUEUED)
    print(f"{len(lost)} of {goals} goal results lost in {RUNS} SIGTERM runs: {lost}")
    assert not lost, f"{len(lost)} of {goals} goal results lost: {lost}"
    refused = 0
    for run, got in enumerate(runs):
        assert got["exit code"] == 0, f"run {run}: exit code {got['exit code']}:\n{got['log']}"
        assert got["large"] == SegmentationResult.STATUS_OK and got["large targets"] >= 10, (run, got)
        # refused at the signal; one that had started by then (a slow machine) is finished
        queued = [got[f"queued {k}"] for k in range(QUEUED)]
        assert set(queued) <= {SegmentationResult.STATUS_NOT_READY, SegmentationResult.STATUS_OK}, (run, got)
        refused += queued.count(SegmentationResult.STATUS_NOT_READY)
        assert "Traceback" not in got["log"] and "never retrieved" not in got["log"], got["log"]
    print(f"{refused} of {RUNS * QUEUED} queued goals refused at the signal")
    assert refused >= RUNS * QUEUED // 2, "the signal mostly came after the large goal: not the case under test"


def test_an_idle_sigint_logs_nothing_but_the_shutdown(client: RosClient, domain_id: int, chain_model_dir: Path,
                                                      tmp_path: Path) -> None:
    """Before: "The following exception was never retrieved: cannot use Destroyable because destruction
    was requested" at an idle SIGINT (in 1 of 3 runs with diagnostics at 100 Hz): the diagnostics
    timer's callback still ran while the shutdown transition destroyed its publisher."""
    processes = [NodeProcess(domain_id, f"pixellm_idle_{i}", {"model.path": str(chain_model_dir), "model.device": "cpu",
                                                             "diagnostics_period_s": 0.01},
                             tmp_path / f"pixellm_idle_{i}.log") for i in range(AT_ONCE)]
    try:
        for process in processes:
            process.wait_active(client, timeout=240)
        time.sleep(1.0)
        for process in processes:
            process.process.send_signal(signal.SIGINT)
        for process in processes:
            assert process.process.wait(120) == 0, process.log_tail()
            log = process.log_path.read_text()
            assert not [word for word in ("never retrieved", "Destroyable", "Traceback", "[ERROR]", "[WARN]")
                        if word in log], log
    finally:
        for process in processes:
            process.stop()
