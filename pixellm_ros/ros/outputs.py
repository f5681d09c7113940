"""The node's output topics: one typed, frozen bundle of the publishers results go out on.

The node makes it at configure (``ResultOutputs.create``, every publisher through the node's
``make``, which records it, so that a configure failing half-way destroys what it made) and hands
it to the desk once (``RequestDesk.configure``); cleanup takes it back with the rest. Publishing
is here too:

    publish(msg)                                 every result: the result topic; the answer topic when OK
    publish_extras(settings, image, outcome)     after an OK result, each only while somebody subscribes:
                                                 the overlay (output.debug_image), with depth the
                                                 targets' cloud (output.point_cloud) and the markers
    acknowledged()                               the result and answer topics acknowledged (drain)

A new output topic is its ``topics.*`` parameter (params.py), a field and its line in ``create``,
and its ``publish`` step here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from rclpy.duration import Duration
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from pixellm_ros.msg import SegmentationResult as ResultMsg

from . import qos
from .conversions import rgb_to_image_msg
from .spatial_conversions import targets_cloud_msg, targets_marker_array

if TYPE_CHECKING:
    from .params import NodeSettings
    from .request_flow import RunOutcome
    from .requests import BoundImage

# make(message type, topic, QoS profile) -> the node's new publisher
MakePublisher = Callable[[type, str, QoSProfile], Publisher]


@dataclass(frozen=True)
class ResultOutputs:
    """The publishers of one configuration (see the module docstring)."""

    result: Publisher  # pixellm_ros/msg/SegmentationResult, every request
    answer: Publisher  # std_msgs/String, the answer text of every successful request
    debug_image: Publisher  # sensor_msgs/Image, the overlay
    targets_cloud: Publisher | None  # sensor_msgs/PointCloud2, with depth.enabled
    markers: Publisher | None  # visualization_msgs/MarkerArray, with depth.enabled

    @classmethod
    def create(cls, make: MakePublisher, settings: NodeSettings) -> ResultOutputs:
        depth = settings.request_depth
        return cls(
            result=make(ResultMsg, settings.result_topic, qos.result_qos(depth)),
            answer=make(String, settings.answer_topic, qos.result_qos(depth)),
            debug_image=make(Image, settings.debug_image_topic, qos.debug_image_qos()),
            targets_cloud=(make(PointCloud2, settings.targets_cloud_topic, qos.result_qos(1))
                           if settings.depth_enabled else None),
            markers=make(MarkerArray, settings.markers_topic, qos.result_qos(1)) if settings.depth_enabled else None,
        )

    def publish(self, msg: ResultMsg) -> None:
        """A request's result: the result topic, then the answer topic when it is OK."""
        self.result.publish(msg)
        if msg.status == ResultMsg.STATUS_OK:
            self.answer.publish(String(data=msg.answer))

    def publish_extras(self, settings: NodeSettings, image: BoundImage, outcome: RunOutcome,
                       tracked: bool = False) -> None:
        """After an OK result: the overlay, the targets' cloud and the markers (each only when wanted);
        ``tracked``: the overlay and markers come from the tracks (tracking_desk.py), keyed by track id."""
        if settings.debug_image and not tracked and _wanted(self.debug_image):
            from pixellm_ros.engine.overlay import draw_overlay

            self.debug_image.publish(rgb_to_image_msg(draw_overlay(image.rgb, outcome.result), image.header))
        targets_3d = outcome.targets_3d
        if targets_3d is not None and targets_3d.any_3d:
            if settings.point_cloud and _wanted(self.targets_cloud):
                self.targets_cloud.publish(targets_cloud_msg(targets_3d.targets, image.header))
            if not tracked and _wanted(self.markers):
                names = [t.name for t in outcome.msg.targets]
                self.markers.publish(targets_marker_array(targets_3d.targets, image.header, names))

    def acknowledged(self) -> bool:
        """Every subscriber of the result and answer topics has acknowledged their messages (asked,
        not waited for)."""
        return all(publisher.wait_for_all_acked(Duration(seconds=0)) for publisher in (self.result, self.answer))


def _wanted(publisher: Publisher | None) -> bool:
    return publisher is not None and publisher.get_subscription_count() > 0
