"""``camera_sim_node``: a stand-in camera that publishes ``sensor_msgs/Image`` (rgb8) at a fixed rate.

Frames come from one of three sources (parameter ``source``):

``world``    generated tabletop scenes (``pixellm_ros.world``): a new scene every ``scene_period_s``
             seconds, the same rendering in between (a still camera over a still table); the
             objects of each new scene are logged so you know what to ask for. With ``moving``
             (off by default) the world moves (``pixellm_ros.world.motion``): the camera pans and
             dollies on a slow path, objects are pushed and hide one another for a while; its time
             advances 1 / ``rate_hz`` per frame (a slow render slows the world, it never jumps).
``folder``   the images of ``folder`` (png, jpg, jpeg, bmp; sorted by name), one per frame, looping.
``pattern``  a test pattern (colour bars and a grey square that moves one step per frame).

Every frame is stamped with the node clock's now and ``frame_id`` (default ``camera``). Published
on ``image_raw`` (remap it) with reliable KEEP_LAST depth 1, which both reliable and best-effort
subscribers accept.

Depth (source ``world`` only, parameter ``publish_depth``, on by default): with every colour frame,
under the SAME header, an aligned depth image on ``depth/image_raw`` (``depth_encoding``: 16UC1
millimetres or 32FC1 metres) and the camera's ``camera_info`` (plumb_bob, zero distortion), both
rendered from the world's geometry (``pixellm_ros.world.geometry``: a pinhole camera 0.75 m over
the table, pitched 70 degrees down), so every pixel's depth is exact and colour, masks and depth
agree pixel for pixel. The same QoS as the colour frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from pixellm_ros.spatial import PinholeIntrinsics

from .conversions import rgb_to_image_msg
from .qos import camera_publisher_qos
from .spatial_conversions import DEPTH_ENCODINGS, camera_info_msg, depth_to_msg

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SOURCES = ("world", "folder", "pattern")


def folder_frames(folder: Path) -> Iterator[np.ndarray]:
    """The folder's images as (H, W, 3) uint8 RGB, sorted by file name, forever."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{folder}'")
    images = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image '{path}'")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    while True:
        yield from images


def pattern_frames(height: int, width: int) -> Iterator[np.ndarray]:
    """Colour bars with a grey square moving one step right (wrapping) per frame."""
    colours = np.array([[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0],
                        [255, 0, 255], [255, 0, 0], [0, 0, 255], [0, 0, 0]], dtype=np.uint8)
    bars = colours[(np.arange(width) * len(colours)) // width]
    base = np.broadcast_to(bars, (height, width, 3)).copy()
    side = max(4, min(height, width) // 8)
    step = 0
    while True:
        frame = base.copy()
        x = (step * max(1, width // 64)) % max(1, width - side)
        y = (height - side) // 2
        frame[y : y + side, x : x + side] = 128  # grey: no bar has that colour, so it always shows
        yield frame
        step += 1


def world_frames(height: int, width: int, seed: int, frames_per_scene: int,
                 on_new_scene: Any = None) -> Iterator[np.ndarray]:
    """Rendered tabletop scenes; each is repeated frames_per_scene times."""
    for rgb, _depth, _intrinsics in world_views(height, width, seed, frames_per_scene, on_new_scene, None):
        yield rgb


WorldView = tuple[np.ndarray, "np.ndarray | None", PinholeIntrinsics]


def world_views(height: int, width: int, seed: int, frames_per_scene: int, on_new_scene: Any = None,
                depth_encoding: str | None = "16UC1") -> Iterator[WorldView]:
    """(rgb, depth, intrinsics) of rendered tabletop scenes, each scene repeated frames_per_scene times.

    depth: (H, W) uint16 millimetres for "16UC1", float32 metres for "32FC1", None for None (not rendered).
    """
    from pixellm_ros.world.scene import sample_scene

    rng = np.random.default_rng(seed)
    while True:
        scene = sample_scene(rng, (height, width))
        if on_new_scene is not None:
            on_new_scene(scene)
        rgb, _masks = scene.render()
        camera = scene.geometry.camera
        intrinsics = PinholeIntrinsics.from_matrix(camera.K, width, height, "plumb_bob", [0.0] * 5)
        depth = scene.geometry.depth_image(depth_encoding) if depth_encoding is not None else None
        for _ in range(max(1, frames_per_scene)):
            yield rgb, depth, intrinsics


def moving_world_views(height: int, width: int, seed: int, rate_hz: float, scene_period_s: float,
                       on_new_scene: Any = None, depth_encoding: str | None = "16UC1",
                       on_frame: Any = None) -> Iterator[WorldView]:
    """(rgb, depth, intrinsics) of moving worlds (``world.motion.MovingWorld``) at ``rate_hz``, a new
    world every ``scene_period_s`` seconds; ``on_frame`` gets each ``WorldFrame`` (its exact masks,
    object ids and depth: the ground truth)."""
    from pixellm_ros.world.motion import MovingWorld

    rng = np.random.default_rng(seed)
    while True:
        world = MovingWorld.sample(rng, (height, width), duration_s=scene_period_s)
        cam = world.camera
        intrinsics = PinholeIntrinsics.from_matrix(cam.K, width, height, "plumb_bob", [0.0] * 5)
        for index in range(max(1, round(scene_period_s * rate_hz))):
            frame = world.frame(index, rate_hz)
            if index == 0 and on_new_scene is not None:
                on_new_scene(frame.scene)
            if on_frame is not None:
                on_frame(frame)
            yield frame.rgb, frame.depth_image(depth_encoding) if depth_encoding is not None else None, intrinsics


def _describe(scene: Any) -> str:
    return ", ".join(f"{obj.size} {obj.colour} {obj.shape}" for obj in scene.objects)


class CameraSimNode(Node):
    """Publishes frames from the configured source on ``image_raw`` at ``rate_hz``."""

    def __init__(self, node_name: str = "camera_sim", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)

        def declare(name: str, default: Any, description: str) -> Any:
            # Dynamic typing: a launch argument "5" (an int) for rate_hz must not stop the node.
            descriptor = ParameterDescriptor(description=description, dynamic_typing=True)
            value = self.declare_parameter(name, default, descriptor).value
            if value is None:
                return default
            if isinstance(default, bool) and isinstance(value, str):  # a launch argument "false"
                return value.strip().lower() in ("1", "true", "yes", "on")
            return type(default)(value)

        source = declare("source", "world", f"frame source: {' | '.join(SOURCES)}")
        folder = declare("folder", "", "image folder for source=folder")
        rate_hz = float(declare("rate_hz", 5.0, "frames per second"))
        width = int(declare("width", 640, "frame width (world, pattern)"))
        height = int(declare("height", 480, "frame height (world, pattern)"))
        seed = int(declare("seed", 0, "random seed of the world scenes"))
        scene_period_s = float(declare("scene_period_s", 5.0, "seconds between new world scenes"))
        self._frame_id = declare("frame_id", "camera", "header.frame_id of the frames")
        publish_depth = declare("publish_depth", True, "world source: also publish depth/image_raw and camera_info")
        depth_encoding = declare("depth_encoding", "16UC1", "depth/image_raw encoding: 16UC1 (mm) | 32FC1 (m)")
        moving = declare("moving", False, "world source: the camera pans and dollies, objects are pushed and hide"
                                          " one another (world.motion); a new world every scene_period_s")

        # The moving world's ground truth of the frame published last (in-process users, tests).
        self.world_frame: Any = None
        self._next_truth: Any = None
        if source not in SOURCES:
            raise ValueError(f"parameter 'source' is '{source}'; use one of {', '.join(SOURCES)}")
        if rate_hz <= 0:
            raise ValueError(f"parameter 'rate_hz' must be > 0, got {rate_hz}")
        if depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"parameter 'depth_encoding' is '{depth_encoding}'; use one of"
                             f" {', '.join(DEPTH_ENCODINGS)}")
        self._with_depth = bool(publish_depth) and source == "world"
        if source == "folder":
            self._frames = folder_frames(Path(folder).expanduser())
        elif source == "pattern":
            self._frames = pattern_frames(height, width)
        elif moving:
            self._frames = moving_world_views(height, width, seed, rate_hz, scene_period_s,
                                              lambda scene: self.get_logger().info(f"new world: {_describe(scene)}"),
                                              depth_encoding if self._with_depth else None, self._keep_truth)
        else:
            self._frames = world_views(height, width, seed, round(scene_period_s * rate_hz),
                                       lambda scene: self.get_logger().info(f"new scene: {_describe(scene)}"),
                                       depth_encoding if self._with_depth else None)
        qos = camera_publisher_qos()
        self._publisher = self.create_publisher(Image, "image_raw", qos)
        self._depth_publisher = self.create_publisher(Image, "depth/image_raw", qos) if self._with_depth else None
        self._info_publisher = self.create_publisher(CameraInfo, "camera_info", qos) if self._with_depth else None
        self._timer = self.create_timer(1.0 / rate_hz, self._publish_next)
        self.published = 0
        self.get_logger().info(f"publishing {source} frames on {self._publisher.topic_name} at {rate_hz} Hz")
        if self._with_depth:
            self.get_logger().info(f"with {depth_encoding} depth on {self._depth_publisher.topic_name} and"
                                   f" {self._info_publisher.topic_name}")
        elif publish_depth and source != "world":
            self.get_logger().info(f"no depth for source={source}: only the world has geometry")

    def _keep_truth(self, frame: Any) -> None:
        self._next_truth = frame

    def _publish_next(self) -> None:
        item = next(self._frames)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self._frame_id)
        if isinstance(item, tuple):
            frame, depth, intrinsics = item
        else:
            frame, depth, intrinsics = item, None, None
        self._publisher.publish(rgb_to_image_msg(frame, header))
        if self._with_depth and depth is not None:
            self._depth_publisher.publish(depth_to_msg(depth, header))
            self._info_publisher.publish(camera_info_msg(intrinsics, header))
        self.published += 1
        self.world_frame = self._next_truth

