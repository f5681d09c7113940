"""At SIGTERM every accepted goal's result reaches its action client, also while a large full-frame
mask result is going out (issue 25: 3 of 7 runs lost a queued goal's result, the drain waited a
fixed 0.5 s); an idle SIGINT logs nothing but the shutdown.

Over real DDS, node processes started by the runner: a goal with a 2000x1500 image whose answer
carries 13 full-frame masks (a 39 MB result) runs, three goals wait behind it, SIGTERM comes
during its tokens, so that its result goes out while the node shuts down; 20 runs, two node
processes at a time, two runs a test (each test stays within pytest's per-test timeouts on a
loaded machine, where starting a node process takes minutes).
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult
from support.dds import NodeProcess, RosClient, rgb_image_msg, wait_until

RUNS = 20
AT_ONCE = 2  # runs a test: node processes shutting down side by side (the machine's cores are shared)
IDLE_PROCESSES = 3
LARGE = (1500, 2000)  # H, W of the running goal's image
TOKENS = 160  # the loop model's answer: a target every 12 tokens, each a full-frame mask of LARGE
# Tokens generated when SIGTERM is sent, as the client reads them from the goal's feedback. The
# client's rclpy ActionClient takes one feedback message per executor wake and drops the rest once
# the result is in: on a loaded machine it read a 160-token answer's feedback only up to 102 (CI)
# or not at all before the result came, so the signal waits for an early token, and the large
# goal's remaining tokens and 13 masks still run into the drain.
SIGNAL_AT = 40
QUEUED = 3
BUDGET_S = 120.0  # the node's shutdown_timeout_s (see large_result_run)
ATTEMPTS = 3  # a run whose large goal's feedback all missed the client (so no signal came in time) is run again


def large_result_run(run: int, client: RosClient, domain_id: int, model_dir: Path, logs: Path,
                     attempt: int = 0) -> dict[str, object]:
    """One node process: a large goal running, QUEUED goals waiting, SIGTERM during its tokens.

    Returns what each goal's client got: its result's status, or the reason it got none; or
    ``{"feedback lost": ...}`` when the large goal ended before the client had read SIGNAL_AT
    tokens of its feedback (the signal is timed by it).
    """
    name = f"pixellm_sigterm_{run}" + (f"_again{attempt}" if attempt else "")
    process = NodeProcess(domain_id, name, {
        "model.path": str(model_dir), "model.device": "cpu", "queue_size": 4, "max_image_age_s": 0.0,
        "generation.max_new_tokens": TOKENS, "output.mask_format": "full", "diagnostics_period_s": 0.0,
        # the budget is not what is under test: at a load average of 10 on 2 cores the large goal's
        # last 40 tokens and 13 masks took 23 s of the default 30 s, and the slowest reply's settling
        # time was cut short (logged) in 9 of 20 runs
        "shutdown_timeout_s": BUDGET_S,
    }, logs / f"{name}.log")
    try:
        process.wait_active(client, timeout=240)
        client.settle_action(name)
        rng = np.random.default_rng(run)
        large = rgb_image_msg(rng.integers(0, 256, (*LARGE, 3), dtype=np.uint8), client.now(), "cam")
        small = rgb_image_msg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), client.now(), "cam")
        late = threading.Event()
        most = [0]  # the most tokens a feedback message said

        def on_feedback(msg: object) -> None:
            most[0] = max(most[0], msg.feedback.generated_tokens)
            if msg.feedback.generated_tokens >= SIGNAL_AT:
                late.set()

        sent = {"large": client.send_goal(name, SegmentAction.Goal(image=large, instruction="the large one"),
                                          on_feedback)}
        for k in range(QUEUED):
            sent[f"queued {k}"] = client.send_goal(name, SegmentAction.Goal(image=small, instruction=f"queued {k}"))
        assert wait_until(lambda: all(f.done() for f in sent.values()), 60), (
            f"goals not acknowledged: {[key for key, f in sent.items() if not f.done()]}")
        handles = {key: future.result() for key, future in sent.items()}
        assert all(handle.accepted for handle in handles.values())
        results = {key: handle.get_result_async() for key, handle in handles.items()}  # asked before the signal
        wait_until(lambda: late.is_set() or results["large"].done(), 120)
        if results["large"].done():
            # The goal ended before the client had read SIGNAL_AT tokens of its feedback (see
            # SIGNAL_AT; 4 of ~150 runs here read none at all): not the case under test, run it again.
            large_result = results["large"].result().result.result
            return {"feedback lost": (most[0], large_result.status, len(large_result.targets))}
        assert late.is_set(), (f"the large goal's answer never reached {SIGNAL_AT} tokens in 120 s: feedback said "
                               f"{most[0]} at most, no result yet\n{process.log_tail()}")
        process.process.send_signal(signal.SIGTERM)
        code = process.process.wait(BUDGET_S + 60)
        wait_until(lambda: all(f.done() for f in results.values()), 10)
        got: dict[str, object] = {"exit code": code}
        for key, future in results.items():
            got[key] = future.result().result.result.status if future.done() else "no result"
        got["large targets"] = len(results["large"].result().result.result.targets) if results["large"].done() else 0
        got["log"] = process.log_path.read_text()
        return got
    finally:
        process.stop()


# Two runs took 195-213 s at a load average of 10 on 2 cores (the first test also builds the loop
# model, 123 s there): more than pytest-timeout's 300 s, still under the faulthandler watchdog's 420 s.
@pytest.mark.timeout(400)
@pytest.mark.parametrize("first", range(0, RUNS, AT_ONCE), ids=lambda first: f"runs{first}-{first + AT_ONCE - 1}")
def test_at_sigterm_every_goal_gets_its_result_while_a_large_full_mask_result_goes_out(
        client: RosClient, domain_id: int, loop_model_dir: Path, tmp_path: Path, first: int) -> None:
    numbers = range(first, first + AT_ONCE)
    retried: list[tuple[int, object]] = []

    def run_until_tested(run: int) -> dict[str, object]:
        for attempt in range(ATTEMPTS):
            logs = tmp_path / f"attempt{attempt}"
            logs.mkdir(exist_ok=True)
            got = large_result_run(run, client, domain_id, loop_model_dir, logs, attempt)
            if "feedback lost" not in got:
                return got
            retried.append((run, got["feedback lost"]))
        raise AssertionError(f"run {run}: the large goal ended before its feedback said {SIGNAL_AT} tokens in "
                             f"{ATTEMPTS} attempts: {retried}")

    with ThreadPoolExecutor(AT_ONCE) as pool:
        runs = dict(zip(numbers, pool.map(run_until_tested, numbers)))
    print(f"runs started again because the large goal ended before its feedback was read: {retried}")
    lost = [(run, key) for run, got in runs.items() for key, value in got.items() if value == "no result"]
    goals = AT_ONCE * (1 + QUEUED)
    print(f"{len(lost)} of {goals} goal results lost in SIGTERM runs {first}-{first + AT_ONCE - 1}: {lost}")
    assert not lost, (f"{len(lost)} of {goals} goal results lost: {lost}\n" + "\n".join(
        f"run {run}: exit code {runs[run]['exit code']}, log:\n{runs[run]['log']}" for run in sorted({r for r, _ in lost})))
    refused = 0
    for run, got in runs.items():
        assert got["exit code"] == 0, f"run {run}: exit code {got['exit code']}:\n{got['log']}"
        assert got["large"] == SegmentationResult.STATUS_OK and got["large targets"] >= 10, (run, got)
        # refused at the signal; one that had started by then (a slow machine) is finished
        queued = [got[f"queued {k}"] for k in range(QUEUED)]
        assert set(queued) <= {SegmentationResult.STATUS_NOT_READY, SegmentationResult.STATUS_OK}, (run, got)
        refused += queued.count(SegmentationResult.STATUS_NOT_READY)
        # nothing left owed or unsettled when the budget ran out, no error at exit
        assert not [word for word in ("Traceback", "never retrieved", "[WARN]", "[ERROR]") if word in got["log"]], got["log"]
    print(f"{refused} of {AT_ONCE * QUEUED} queued goals refused at the signal")
    assert refused >= AT_ONCE * QUEUED // 2, "the signal mostly came after the large goal: not the case under test"


def test_an_idle_sigint_logs_nothing_but_the_shutdown(client: RosClient, domain_id: int, chain_model_dir: Path,
                                                      tmp_path: Path) -> None:
    """Before: "The following exception was never retrieved: cannot use Destroyable because destruction
    was requested" at an idle SIGINT (in 6 of 10 processes with diagnostics at 100 Hz): a callback
    (the diagnostics timer's) handed to an executor thread by the drain's last spin_once ran after
    rclpy's executor shutdown had destroyed its guard condition (spinning.JoiningExecutor)."""
    processes = [NodeProcess(domain_id, f"pixellm_idle_{i}", {"model.path": str(chain_model_dir), "model.device": "cpu",
                                                             "diagnostics_period_s": 0.01},
                             tmp_path / f"pixellm_idle_{i}.log") for i in range(IDLE_PROCESSES)]
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


def test_a_signal_while_the_node_process_loads_torch_ends_it_quietly(domain_id: int, chain_model_dir: Path,
                                                                     tmp_path: Path) -> None:
    """The first signal after ``init_ros`` (its handler raises until the spinning starts) while the
    process imports torch and makes the node: exit code 0 and nothing logged (before: a
    KeyboardInterrupt traceback out of the import, exit code -2). ``init_ros`` is seen done by the
    process catching SIGTERM (its SigCgt in /proc): nothing catches it before."""
    process = NodeProcess(domain_id, "pixellm_early", {"model.path": str(chain_model_dir), "model.device": "cpu"},
                          tmp_path / "pixellm_early.log")
    status = Path(f"/proc/{process.process.pid}/status")

    def catches_sigterm() -> bool:
        caught = next((line.split()[1] for line in status.read_text().splitlines() if line.startswith("SigCgt:")), "0")
        return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)

    try:
        assert wait_until(catches_sigterm, 120, interval=0.002), process.log_tail()
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(120) == 0, process.log_tail()
        assert process.log_path.read_text().strip() == ""
    finally:
        process.stop()
