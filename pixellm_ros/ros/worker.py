"""The request queue and the one worker thread that runs them.

Policy (the node's README text):

* Requests from every channel (instruction topic, service, action, standing instruction) share one
  FIFO queue and one worker thread, the only thread that touches the model. At most ``queue_size``
  requests wait while one runs.
* When the queue is full, the NEW request is refused at once (``STATUS_QUEUE_FULL``); requests
  already waiting keep their place. A refused request still gets its one (error) result.
* A place can be RESERVED before the request exists (an action goal is accepted or rejected before
  its execution starts): a reservation counts as a waiting request until ``submit(..., reserved=True)``
  takes it up or ``release`` gives it back; one never taken up lapses after ``RESERVATION_TTL_S``.
* Every accepted request gets exactly one result, and accepted requests are answered in the order
  they were accepted. Stopping the worker (deactivate, shutdown) lets the running request end —
  at once when asked to stop (deactivate), or after at most ``finish_within`` seconds of running
  on (shutdown) — then answers the requests still waiting, in order, with the reason given to
  ``stop`` (the node uses ``STATUS_NOT_READY``), and only then returns.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from typing import Callable, Deque, Generic, TypeVar

RequestT = TypeVar("RequestT")
RESERVATION_TTL_S = 30.0


class SubmitOutcome(enum.Enum):
    ACCEPTED = "accepted"
    FULL = "full"        # the queue holds queue_size waiting requests
    CLOSED = "closed"    # the worker is stopping or stopped


class RequestWorker(Generic[RequestT]):
    """A bounded FIFO of requests consumed by one dedicated thread.

    handle(requests): runs up to ``max_batch`` requests (taken together, in queue order) to their
        results; called on the worker thread only.
    refuse(request, reason): answers a request the worker will not run (it was waiting when stop()
        came); called on the worker thread, in queue order.
    on_crash(request, error): called for each request of a step whose handle raised, so every one
        still gets its result.
    """

    def __init__(
        self,
        capacity: int,
        handle: Callable[[list[RequestT]], None],
        refuse: Callable[[RequestT, str], None],
        on_crash: Callable[[RequestT, BaseException], None],
        name: str = "pixellm-worker",
        max_batch: int = 1,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._max_batch = max_batch
        self._capacity = capacity
        self._handle = handle
        self._refuse = refuse
        self._on_crash = on_crash
        self._queue: Deque[RequestT] = collections.deque()
        self._reserved: Deque[float] = collections.deque()  # expiry times, oldest first
        self._cond = threading.Condition()
        self._closed = False
        self._close_reason = ""
        self._running = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.stopping = threading.Event()  # set by stop(): the running request should end early

    def start(self) -> None:
        self._thread.start()

    @property
    def capacity(self) -> int:
        return self._capacity

    def waiting(self) -> int:
        """Requests accepted but not yet started (reservations included)."""
        with self._cond:
            self._drop_lapsed()
            return len(self._queue) + len(self._reserved)

    def _drop_lapsed(self) -> None:
        now = time.monotonic()
        while self._reserved and self._reserved[0] < now:
            self._reserved.popleft()

    def reserve(self) -> SubmitOutcome:
        """Hold one place in the queue for a request to come (see the module docstring)."""
        with self._cond:
            if self._closed:
                return SubmitOutcome.CLOSED
            self._drop_lapsed()
            if len(self._queue) + len(self._reserved) >= self._capacity:
                return SubmitOutcome.FULL
            self._reserved.append(time.monotonic() + RESERVATION_TTL_S)
            return SubmitOutcome.ACCEPTED

    def release(self) -> None:
        """Give back one reservation that will not be taken up."""
        with self._cond:
            if self._reserved:
                self._reserved.pop()

    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        with self._cond:
            return not self._running and not self._queue

    def submit(self, request: RequestT, reserved: bool = False) -> SubmitOutcome:
        """Queue a request unless the worker is stopping or the queue is full (never blocks).

        reserved: the request takes up a reservation (``reserve``); it is queued even if the
        reservation lapsed meanwhile, as long as the worker is not stopping.
        """
        with self._cond:
            if reserved and self._reserved:
                self._reserved.pop()
            if self._closed:
                return SubmitOutcome.CLOSED
            self._drop_lapsed()
            if not reserved and len(self._queue) + len(self._reserved) >= self._capacity:
                return SubmitOutcome.FULL
            self._queue.append(request)
            self._cond.notify()
            return SubmitOutcome.ACCEPTED

    def stop(self, reason: str, finish_within: float = 0.0, timeout: float | None = None) -> bool:
        """Refuse new requests, let the running one end, answer the waiting ones with ``reason``.

        finish_within: seconds the running request may go on before it is asked to stop (0: at once).
        Returns True when the thread has finished (False only if ``timeout`` ran out first).
        """
        with self._cond:
            self._closed = True
            self._close_reason = reason
            self._reserved.clear()
            if finish_within <= 0:
                self.stopping.set()
            self._cond.notify_all()
        if not self._thread.is_alive():
            return True
        if finish_within > 0:
            self._until_idle_or(finish_within)
            self.stopping.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _until_idle_or(self, seconds: float) -> None:
        """Wait until the running request has ended (or ``seconds`` passed)."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while self._running and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed and drained
                refuse = self._closed
                count = 1 if refuse else min(self._max_batch, len(self._queue))
                requests = [self._queue.popleft() for _ in range(count)]
                self._running = True
            try:
                if refuse:
                    self._refuse(requests[0], self._close_reason)
                else:
                    self._handle(requests)
            except BaseException as error:  # every request must still get its one result
                for request in requests:
                    try:
                        self._on_crash(request, error)
                    except Exception:  # noqa: BLE001 - the thread must outlive a failing error path
                        pass
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
