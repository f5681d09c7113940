"""BackgroundNode: a node in its own context, spun by a thread, as scripts use it to talk to the node."""

from __future__ import annotations

from std_msgs.msg import String

from pixellm_ros.ros.spinning import BackgroundNode
from support.dds import wait_until


def test_background_nodes_talk_over_dds_and_close_cleanly(domain_id: int) -> None:
    listener = BackgroundNode("spinning_test_listener", domain_id, threads=1)
    talker = BackgroundNode("spinning_test_talker", domain_id, threads=2)
    heard: list[str] = []
    try:
        listener.node.create_subscription(String, "spinning_test", lambda msg: heard.append(msg.data), 10)
        publisher = talker.node.create_publisher(String, "spinning_test", 10)
        assert wait_until(lambda: publisher.get_subscription_count() > 0, timeout=20), "no match over DDS"

        def publish_and_check() -> bool:
            publisher.publish(String(data="hello"))
            return "hello" in heard

        # delivered by the listener's own spinning thread while this thread only waits
        assert wait_until(publish_and_check, timeout=20, interval=0.2)
    finally:
        listener.close()
        talker.close()
    for node in (listener, talker):
        assert not node.context.ok()
        assert not node._thread.is_alive()
