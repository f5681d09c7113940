"""What the node still owes its callers after the request desk has answered: the replies rclpy
writes on the executor's threads (for ``PixelLMNode.drain`` at SIGINT / SIGTERM).

    service   rclpy writes the response after the service callback has returned
              (``track_service``: the calls taken, the responses written)
    action    rclpy writes a goal's result only once the goal has finished AND a result request
              of its client has been taken; a client asks right after acceptance, but its request
              can still wait in DDS or in the executor's queue (``ResultServingActionServer``)

A drain that stops spinning before those writes (the old fixed 0.5 s) loses the reply: a large
full-frame-mask result takes seconds to serialise and write, and a waiting goal's small result
can be queued behind it. So the drain spins until nothing is owed, and ``WriteLog`` says how long
the slowest write took: neither rclpy nor the rmw layer reports when a service or action reply has
been RECEIVED (there is no ``wait_for_all_acked`` for their writers), so the drain keeps the
writers alive after the last write for as long as the replies written while draining need to
arrive: at least as long as the slowest write took, and at least their serialised size at
SETTLE_BYTES_PER_S. The write returning says little: a reply larger than the shared-memory segment
(16 MB, ``config/fastdds_large_frames.xml``) goes in pieces that a busy reader can lose and the
writer must resend, and the replies of one action server arrive in order, so a queued goal's small
result waits behind a large one (CI: a 39 MB result and the three results behind it lost together
when the node exited 0.5 s after writing them on a loaded machine).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from rclpy.action import ActionServer
from rclpy.serialization import serialize_message

# How fast the drain assumes the replies it wrote reach their readers: a loaded 2-core machine's
# share-memory-and-resend path, conservatively (a 39 MB result: about 5 s).
SETTLE_BYTES_PER_S = 8e6


class WriteLog:
    """Replies owed (taken, not yet written) and when the writes ended and how long they took."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owed = 0
        self._last_end = 0.0
        self._slowest = 0.0
        self._draining = False
        self._bytes = 0  # the replies' serialised size since restart_timing (measured only then)

    def owe(self) -> None:
        with self._lock:
            self._owed += 1

    def forgive(self) -> None:
        """A reply that will never be written (its callback raised: rclpy sends nothing)."""
        with self._lock:
            self._owed -= 1

    def paid(self, started: float, reply: Any = None) -> None:
        """An owed reply's write, begun at ``started`` (time.monotonic()), has returned."""
        with self._lock:
            self._owed -= 1
        self.written(started, reply)

    def written(self, started: float, reply: Any = None) -> None:
        """A reply's write, begun at ``started`` (time.monotonic()), has returned; ``reply`` is the
        message written (its size counts while draining, see settling_left)."""
        end = time.monotonic()
        with self._lock:
            draining = self._draining
        size = len(serialize_message(reply)) if draining and reply is not None else 0
        with self._lock:
            self._last_end = end
            self._slowest = max(self._slowest, end - started)
            self._bytes += size

    def owed(self) -> int:
        with self._lock:
            return self._owed

    def restart_timing(self) -> None:
        """Forget the writes so far and measure the size of the next ones (the drain's own)."""
        with self._lock:
            self._slowest = 0.0
            self._bytes = 0
            self._draining = True

    def settling_left(self, minimum_s: float) -> float:
        """Seconds until ``max(minimum_s, the slowest write, the replies' size at SETTLE_BYTES_PER_S)``
        (writes since restart_timing) has passed since the last write ended (0 once it has: the
        writers' last replies had time to be read)."""
        with self._lock:
            wait = max(minimum_s, self._slowest, self._bytes / SETTLE_BYTES_PER_S)
            return max(0.0, wait - (time.monotonic() - self._last_end))


def track_service(service: Any, log: WriteLog) -> None:
    """Count each call of ``service`` as owed from its callback's start until rclpy has written
    its response (rclpy's executor calls the service's ``send_response`` after the callback)."""
    callback: Callable[[Any, Any], Any] = service.callback
    send = service.send_response

    def call(request: Any, response: Any) -> Any:
        log.owe()
        try:
            return callback(request, response)
        except BaseException:
            log.forgive()
            raise

    def send_response(response: Any, header: Any) -> None:
        started = time.monotonic()
        try:
            send(response, header)
        finally:
            log.paid(started, response)

    service.callback = call
    service.send_response = send_response


class ResultServingActionServer(ActionServer):
    """An rclpy ActionServer that knows which results it still owes, through the two steps every
    rclpy since Humble routes a result through: ``_execute_get_result_request`` (a client's
    request taken) and ``_send_result_response`` (the result written for one request).

    ``unanswered()``: goals not finished yet, plus result requests taken and not yet answered;
    ``unasked(since)``: goals finished at or after ``since`` whose result no client has asked for.
    """

    def __init__(self, *args: Any, write_log: WriteLog, **kwargs: Any) -> None:
        self._write_log = write_log
        self._owed_lock = threading.Lock()
        self._waiting: dict[bytes, int] = {}  # goal id -> result requests taken, not yet answered
        self._asked: set[bytes] = set()
        self._finished: dict[bytes, float] = {}  # goal id -> when its result was set
        super().__init__(*args, **kwargs)

    async def _execute_goal(self, execute_callback: Any, goal_handle: Any) -> None:
        try:
            await super()._execute_goal(execute_callback, goal_handle)
        finally:
            with self._owed_lock:
                self._finished[bytes(goal_handle.goal_id.uuid)] = time.monotonic()

    async def _execute_get_result_request(self, request_header_and_message: Any) -> None:
        goal = bytes(request_header_and_message[1].goal_id.uuid)
        if goal in self._goal_handles:  # else rclpy answers at once: unknown goal
            with self._owed_lock:
                self._waiting[goal] = self._waiting.get(goal, 0) + 1
                self._asked.add(goal)
        await super()._execute_get_result_request(request_header_and_message)

    def _send_result_response(self, request_header: Any, future: Any) -> None:
        started = time.monotonic()
        try:
            super()._send_result_response(request_header, future)
        finally:
            goal = next((g for g, f in list(self._result_futures.items()) if f is future), None)
            with self._owed_lock:
                if goal is not None and self._waiting.get(goal, 0) > 0:
                    self._waiting[goal] -= 1
            self._write_log.written(started, future.result() if future.done() else None)

    async def _execute_expire_goals(self, expired_goals: Any) -> None:
        await super()._execute_expire_goals(expired_goals)
        with self._owed_lock:
            for goal in [g for g in self._finished if g not in self._goal_handles]:
                self._finished.pop(goal)
                self._asked.discard(goal)
                self._waiting.pop(goal, None)

    def unanswered(self) -> int:
        running = sum(1 for future in list(self._result_futures.values()) if not future.done())
        with self._owed_lock:
            return running + sum(self._waiting.values())

    def unasked(self, since: float) -> int:
        with self._owed_lock:
            return sum(1 for goal, at in self._finished.items() if at >= since and goal not in self._asked)
