"""The request queue and the one worker thread that runs them.

Policy (the node's README text):

* Requests from every channel (instruction topic, service, action, standing instruction) share one
  FIFO queue and one worker thread, the only thread that touches the model. At most ``queue_size``
  requests wait while one runs.
* When the queue is full, the NEW request is refused at once (``STATUS_QUEUE_FULL``); requests
  already waiting keep their place. A refused request still gets its one (error) result.
* Every accepted request gets exactly one result, and accepted requests are answered in the order
  they were accepted. Stopping the worker (deactivate, shutdown) first lets the running request
  end (the node asks it to stop), then answers the requests still waiting, in order, with the
  reason given to ``stop`` (the node uses ``STATUS_NOT_READY``), and only then returns.
"""

from __future__ import annotations

import collections
import enum
import threading
from typing import Callable, Deque, Generic, TypeVar

RequestT = TypeVar("RequestT")


class SubmitOutcome(enum.Enum):
    ACCEPTED = "accepted"
    FULL = "full"        # the queue holds queue_size waiting requests
    CLOSED = "closed"    # the worker is stopping or stopped


class RequestWorker(Generic[RequestT]):
    """A bounded FIFO of requests consumed by one dedicated thread.

    handle(request): runs one request to its result; called on the worker thread only.
    refuse(request, reason): answers a request the worker will not run (it was waiting when stop()
        came); called on the worker thread, in queue order.
    on_crash(request, error): called when handle raised, so the request still gets its result.
    """

    def __init__(
        self,
        capacity: int,
        handle: Callable[[RequestT], None],
        refuse: Callable[[RequestT, str], None],
        on_crash: Callable[[RequestT, BaseException], None],
        name: str = "pixellm-worker",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._handle = handle
        self._refuse = refuse
        self._on_crash = on_crash
        self._queue: Deque[RequestT] = collections.deque()
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
        """Requests accepted but not yet started."""
        with self._cond:
            return len(self._queue)

    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        with self._cond:
            return not self._running and not self._queue

    def submit(self, request: RequestT) -> SubmitOutcome:
        """Queue a request unless the worker is stopping or the queue is full (never blocks)."""
        with self._cond:
            if self._closed:
                return SubmitOutcome.CLOSED
            if len(self._queue) >= self._capacity:
                return SubmitOutcome.FULL
            self._queue.append(request)
            self._cond.notify()
            return SubmitOutcome.ACCEPTED

    def stop(self, reason: str, timeout: float | None = None) -> bool:
        """Refuse new requests, let the running one end, answer the waiting ones with ``reason``.

        Returns True when the thread has finished (False only if ``timeout`` ran out first).
        """
        with self._cond:
            self._closed = True
            self._close_reason = reason
            self.stopping.set()
            self._cond.notify_all()
        if not self._thread.is_alive():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed and drained
                request = self._queue.popleft()
                refuse = self._closed
                self._running = True
            try:
                if refuse:
                    self._refuse(request, self._close_reason)
                else:
                    self._handle(request)
            except BaseException as error:  # the request must still get its one result
                try:
                    self._on_crash(request, error)
                except Exception:  # noqa: BLE001 - the thread must outlive a failing error path
                    pass
            finally:
                with self._cond:
                    self._running = False
