"""The request queue policy: FIFO, refuse-new-when-full, one answer per request, ordered stop."""

from __future__ import annotations

import threading

import pytest

from pixellm_ros.ros.worker import RequestWorker, SubmitOutcome
from support.dds import wait_until


class Recorder:
    """Runs requests (ints) on the worker thread, holding each until released; records every answer."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str]] = []
        self.steps: list[list[int]] = []
        self.threads: set[str] = set()
        self.started = threading.Event()
        self.release = threading.Event()

    def handle(self, requests: list[int]) -> None:
        self.threads.add(threading.current_thread().name)
        self.steps.append(list(requests))
        self.started.set()
        self.release.wait(10)
        if any(request < 0 for request in requests):
            raise RuntimeError("negative request")
        self.answers += [(request, "done") for request in requests]

    def refuse(self, request: int, reason: str) -> None:
        self.answers.append((request, reason))

    def crash(self, request: int, error: BaseException) -> None:
        self.answers.append((request, f"crash: {error}"))


def make(capacity: int = 2, max_batch: int = 1) -> tuple[RequestWorker[int], Recorder]:
    recorder = Recorder()
    worker: RequestWorker[int] = RequestWorker(capacity, recorder.handle, recorder.refuse, recorder.crash,
                                               name="test-worker", max_batch=max_batch)
    worker.start()
    return worker, recorder


def test_requests_run_in_order_on_the_worker_thread() -> None:
    worker, recorder = make(capacity=8)
    recorder.release.set()
    for i in range(6):
        assert worker.submit(i) == SubmitOutcome.ACCEPTED
    assert wait_until(worker.idle, 5)
    assert recorder.answers == [(i, "done") for i in range(6)]
    assert recorder.threads == {"test-worker"}
    worker.stop("bye")


def test_a_full_queue_refuses_the_new_request_and_keeps_the_waiting_ones() -> None:
    worker, recorder = make(capacity=2)
    assert worker.submit(0) == SubmitOutcome.ACCEPTED
    assert recorder.started.wait(5)  # 0 runs, the queue is empty again
    assert worker.submit(1) == SubmitOutcome.ACCEPTED
    assert worker.submit(2) == SubmitOutcome.ACCEPTED
    assert worker.waiting() == 2
    assert worker.submit(3) == SubmitOutcome.FULL  # the new one is refused ...
    recorder.release.set()
    assert wait_until(worker.idle, 5)
    assert recorder.answers == [(0, "done"), (1, "done"), (2, "done")]  # ... the waiting ones keep their place
    worker.stop("bye")


def test_stop_lets_the_running_request_finish_then_answers_the_waiting_ones_in_order() -> None:
    worker, recorder = make(capacity=3)
    worker.submit(0)
    assert recorder.started.wait(5)
    worker.submit(1)
    worker.submit(2)
    stopper = threading.Thread(target=worker.stop, args=("deactivated",))
    stopper.start()
    assert wait_until(lambda: worker.stopping.is_set(), 5)
    assert worker.submit(9) == SubmitOutcome.CLOSED
    assert recorder.answers == []  # nothing is answered before the running request ends
    recorder.release.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert recorder.answers == [(0, "done"), (1, "deactivated"), (2, "deactivated")]


def test_a_crashing_request_still_gets_its_answer_and_the_worker_goes_on() -> None:
    worker, recorder = make(capacity=4)
    recorder.release.set()
    worker.submit(-1)
    worker.submit(5)
    assert wait_until(lambda: len(recorder.answers) == 2, 5)
    assert recorder.answers == [(-1, "crash: negative request"), (5, "done")]
    worker.stop("bye")


def test_capacity_must_be_positive() -> None:
    recorder = Recorder()
    with pytest.raises(ValueError):
        RequestWorker(0, recorder.handle, recorder.refuse, recorder.crash)


def test_with_max_batch_the_worker_takes_the_waiting_requests_together_in_queue_order() -> None:
    worker, recorder = make(capacity=8, max_batch=3)
    worker.submit(0)
    assert recorder.started.wait(5)  # 0 runs alone: nothing else was waiting
    for i in range(1, 6):
        worker.submit(i)
    recorder.release.set()
    assert wait_until(worker.idle, 5)
    assert recorder.steps == [[0], [1, 2, 3], [4, 5]]
    assert recorder.answers == [(i, "done") for i in range(6)]
    worker.stop("bye")


def test_a_crashing_batch_answers_every_request_of_it_and_the_worker_goes_on() -> None:
    worker, recorder = make(capacity=8, max_batch=2)
    worker.submit(0)
    assert recorder.started.wait(5)
    worker.submit(1)
    worker.submit(-1)
    worker.submit(7)
    recorder.release.set()
    assert wait_until(lambda: len(recorder.answers) == 4, 5)
    assert recorder.answers == [(0, "done"), (1, "crash: negative request"), (-1, "crash: negative request"),
                                (7, "done")]
    worker.stop("bye")


def test_a_reservation_holds_a_place_until_it_is_taken_up_or_given_back() -> None:
    worker, recorder = make(capacity=2)
    worker.submit(0)
    assert recorder.started.wait(5)  # running: the queue is empty
    assert worker.reserve() == SubmitOutcome.ACCEPTED
    assert worker.submit(1) == SubmitOutcome.ACCEPTED
    assert worker.waiting() == 2
    assert worker.reserve() == SubmitOutcome.FULL and worker.submit(2) == SubmitOutcome.FULL
    assert worker.submit(3, reserved=True) == SubmitOutcome.ACCEPTED  # takes up its own place
    assert worker.waiting() == 2
    assert worker.reserve() == SubmitOutcome.FULL
    recorder.release.set()
    assert wait_until(worker.idle, 5)
    assert recorder.answers == [(0, "done"), (1, "done"), (3, "done")]
    assert worker.reserve() == SubmitOutcome.ACCEPTED
    worker.release()
    assert worker.waiting() == 0
    worker.stop("bye")


def test_stop_with_finish_within_lets_the_running_request_run_on_then_stops_it() -> None:
    worker, recorder = make(capacity=2)
    worker.submit(0)
    assert recorder.started.wait(5)
    worker.submit(1)
    stopper = threading.Thread(target=worker.stop, args=("shutting down",), kwargs={"finish_within": 30.0})
    stopper.start()
    assert not wait_until(lambda: worker.stopping.is_set(), 0.5)  # the running one may finish
    recorder.release.set()
    stopper.join(5)
    assert recorder.answers == [(0, "done"), (1, "shutting down")]
