"""BackgroundNode: a node spun by a thread in a context its process's BackgroundNodes share, as
scripts use it to talk to the node."""

from __future__ import annotations

import gc
import threading
import time

from std_msgs.msg import String

from pixellm_ros.ros.spinning import BackgroundNode, GroupOutbox, JoiningExecutor
from support.dds import wait_until


def _heard_when_published(publisher, heard: list[str], text: str) -> bool:  # type: ignore[no-untyped-def]
    """Publish ``text`` until it is in ``heard`` (20 s at most)."""

    def publish_and_check() -> bool:
        publisher.publish(String(data=text))
        return text in heard

    return wait_until(publish_and_check, timeout=20, interval=0.2)


def test_background_nodes_share_one_participant_talk_over_dds_and_close_cleanly(lone_domain_id: int) -> None:
    # a domain of their own: the session's client (also a BackgroundNode) would hold the context open
    listener = BackgroundNode("spinning_test_listener", lone_domain_id, threads=1)
    talker = BackgroundNode("spinning_test_talker", lone_domain_id, threads=2)
    heard: list[str] = []
    try:
        assert listener.context is talker.context  # one context, one DDS participant, per domain
        listener.node.create_subscription(String, "spinning_test", lambda msg: heard.append(msg.data), 10)
        publisher = talker.node.create_publisher(String, "spinning_test", 10)
        assert wait_until(lambda: publisher.get_subscription_count() > 0, timeout=20), "no match over DDS"

        # delivered by the listener's own spinning thread while this thread only waits
        assert _heard_when_published(publisher, heard, "hello")
    finally:
        listener.close()
    assert not listener._thread.is_alive() and talker.context.ok()  # the talker still uses the context
    assert talker._thread.is_alive()
    talker.close()
    talker.close()  # a second close does nothing
    assert not talker._thread.is_alive() and not talker.context.ok()  # the last user shut it down
    again = BackgroundNode("spinning_test_again", lone_domain_id)
    try:
        assert again.context is not talker.context and again.context.ok()
    finally:
        again.close()


def test_a_callback_that_raises_is_reported_and_the_node_spins_on(lone_domain_id: int, capfd) -> None:
    """rclpy's spin ends on a callback's exception; a BackgroundNode logs it and goes on spinning,
    so the node's later messages (a client's later replies) are still delivered."""
    background = BackgroundNode("spinning_test_raising", lone_domain_id, threads=2)
    heard: list[str] = []
    try:
        def once_bad(msg: String) -> None:
            if msg.data == "bad":
                raise ValueError("a callback's own bug")
            heard.append(msg.data)

        background.node.create_subscription(String, "spinning_test_raise", once_bad, 10)
        publisher = background.node.create_publisher(String, "spinning_test_raise", 10)
        assert wait_until(lambda: publisher.get_subscription_count() > 0, timeout=20)
        publisher.publish(String(data="bad"))
        assert wait_until(lambda: background.errors, timeout=20), "the exception was not seen"
        publisher.publish(String(data="after"))
        assert wait_until(lambda: "after" in heard, timeout=20), "the node stopped spinning after the exception"
        assert background._thread.is_alive()
        assert len(background.errors) == 1 and "ValueError: a callback's own bug" in background.errors[0]
        assert "spinning_test_raising: a callback raised, spinning on" in capfd.readouterr().err
    finally:
        background.close()
    assert not background._thread.is_alive()


def test_group_outbox_runs_jobs_inside_the_group_never_beside_its_callbacks(lone_domain_id: int, capfd) -> None:
    """GroupOutbox's jobs run on the executor, after (never during) another callback of the same
    mutually exclusive group, in order; a job that raises is logged and the next still runs."""
    background = BackgroundNode("spinning_test_outbox", lone_domain_id, threads=3)
    events: list[str] = []
    started = threading.Event()
    try:
        outbox = GroupOutbox(background.node)  # the node's default group

        def slow() -> None:
            timer.cancel()
            started.set()
            time.sleep(0.5)
            events.append("timer done")

        timer = background.node.create_timer(0.01, slow)
        assert started.wait(20)
        outbox.submit(lambda: events.append(f"job on {threading.current_thread().name}"))
        outbox.submit(lambda: 1 / 0)
        outbox.submit(lambda: events.append("after the failed job"))
        assert wait_until(lambda: len(events) == 3, timeout=20), events
        assert events[0] == "timer done" and events[2] == "after the failed job"  # in the group, in order
        assert events[1].startswith("job on ") and events[1] != f"job on {threading.current_thread().name}"
        assert "spinning_test_outbox: a queued job raised" in capfd.readouterr().err
        outbox.destroy()
        assert not list(background.node.guards)
    finally:
        background.close()


def test_joining_executor_shutdown_leaves_no_callback_failing_on_its_destroyed_guard(lone_domain_id: int,
                                                                                      capfd) -> None:
    """As the node process ends (executables.run_until_shutdown): spun with spin_once, then shut down,
    then the node destroyed. rclpy's MultiThreadedExecutor destroys its guard condition before it
    joins its threads, so a timer callback the last spin_once handed to a thread ended on the
    destroyed guard, printed at exit as "The following exception was never retrieved: cannot use
    Destroyable because destruction was requested" (in 17 of 20 rounds like these; issue 25)."""
    import rclpy
    from rclpy.context import Context

    ticks = [0]
    for _round in range(10):
        context = Context()
        rclpy.init(context=context, domain_id=lone_domain_id)
        try:
            node = rclpy.create_node("joining_executor_test", context=context)
            node.create_timer(0.001, lambda: ticks.__setitem__(0, ticks[0] + 1))
            executor = JoiningExecutor(num_threads=8, context=context)
            executor.add_node(node)
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
            assert executor.shutdown()
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)
        del executor
        gc.collect()
    assert ticks[0] > 10
    err = capfd.readouterr().err
    assert "never retrieved" not in err and "Destroyable" not in err, err


def test_repeated_signals_through_the_whole_exit_never_kill_the_process(domain_id: int, tmp_path) -> None:
    """As ``ros2 launch`` does on Ctrl-C: the terminal's SIGINT, then launch's own a moment later. A
    signal that lands while Python is exiting (handlers reset to their defaults) would kill the
    process (exit code -2) after it cleaned up; every one of them must be harmless."""
    import os
    import signal
    import subprocess
    import time

    from pixellm_ros.ros.runner import camera_command

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), OMP_NUM_THREADS="1")
    log = open(tmp_path / "camera.log", "w")
    process = subprocess.Popen(camera_command({"source": "pattern", "width": 64, "height": 48}), env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: "publishing pattern frames" in (tmp_path / "camera.log").read_text(), 60)
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            process.send_signal(signal.SIGINT)
            time.sleep(0.05)
        assert process.wait(10) == 0, (tmp_path / "camera.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


def test_a_background_node_can_make_its_entities_before_it_spins(lone_domain_id: int) -> None:
    """``start=False``: nothing spins until ``start()`` (PixelLMClient makes its ActionClient first:
    rclpy#1589); a node closed unstarted closes cleanly."""
    unstarted = BackgroundNode("spinning_test_unstarted", lone_domain_id, start=False)
    unstarted.close()
    assert unstarted._thread.ident is None  # closed without ever spinning
    background = BackgroundNode("spinning_test_later", lone_domain_id, threads=2, start=False)
    heard: list[str] = []
    try:
        background.node.create_subscription(String, "spinning_test_later", lambda msg: heard.append(msg.data), 10)
        publisher = background.node.create_publisher(String, "spinning_test_later", 10)
        assert not background._thread.is_alive()
        background.start()
        background.start()  # again: no-op
        assert background._thread.is_alive()
        assert _heard_when_published(publisher, heard, "later")
    finally:
        background.close()
    assert not background._thread.is_alive() and background.errors == []
