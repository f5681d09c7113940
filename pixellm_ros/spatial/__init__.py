"""Targets in 3D: masks + an aligned depth image + pinhole intrinsics -> per-target centroid,
boxes and points in the camera optical frame (metres). numpy / OpenCV / scipy only; nothing of
ROS and nothing else of this project, so any consumer of masks can use it.

    from pixellm_ros.spatial import AlignedDepth, DepthImage, PinholeIntrinsics, Targets3DOptions

    intrinsics = PinholeIntrinsics.from_matrix(K, width, height)        # + distortion model, coefficients
    frame = AlignedDepth(DepthImage(depth_u16_mm_or_f32_m), intrinsics, image_size=(width, height))
    t = frame.target(mask, box=(x0, y0, x1, y1))                        # or frame.target(crop, offset=(x0, y0))
    if t.ok:
        t.centroid, t.box.center, t.box.quaternion_xyzw, t.box.size, t.num_points, t.points
    else:
        t.reason

Frames, units and the choices behind the defaults: ``targets``, ``intrinsics``, ``box``, ``depth``.
"""

from pixellm_ros.spatial.box import Box3D, aligned_box, oriented_box
from pixellm_ros.spatial.depth import DepthError, DepthImage
from pixellm_ros.spatial.intrinsics import DISTORTION_MODELS, IntrinsicsError, PinholeIntrinsics
from pixellm_ros.spatial.targets import AlignedDepth, Target3D, Targets3DOptions

__all__ = [
    "DISTORTION_MODELS",
    "AlignedDepth",
    "Box3D",
    "DepthError",
    "DepthImage",
    "IntrinsicsError",
    "PinholeIntrinsics",
    "Target3D",
    "Targets3DOptions",
    "aligned_box",
    "oriented_box",
]
