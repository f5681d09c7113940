"""What targets in 3D add per target: the spatial core and its messages, at 640x480 and 1280x720.

Run:  source scripts/env.sh && OMP_NUM_THREADS=1 python benchmarks/bench_targets3d.py [--scenes N] [--repeats R]

Every object of N world scenes (their exact masks, 16UC1 depth from the world's geometry) is put
in 3D R times; per object the median time is kept, and the table shows the mean and the 95th
percentile over objects, with the mean mask size. Mask layouts: ``full`` is a full-frame mask
with its box (what the node has: the engine's target.mask and target.box), ``full, no box`` the
same mask without the box (the core finds it), ``cropped`` the mask cut to its box plus its
offset (what a consumer of cropped SegmentedTarget masks has). The last columns add, per target,
the message side the node runs: the SegmentedTarget 3D fields, and the optional point cloud.
Per frame (once per result, whatever the number of targets): depth message -> array, camera_info
-> intrinsics, the frame's set-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from smoke import add_smoke_argument, report  # noqa: E402

from std_msgs.msg import Header  # noqa: E402

from pixellm_ros.msg import SegmentedTarget  # noqa: E402
from pixellm_ros.ros.spatial_conversions import (  # noqa: E402
    camera_info_msg,
    depth_from_msg,
    depth_to_msg,
    fill_target_3d,
    intrinsics_from_camera_info,
    target_cloud_msg,
)
from pixellm_ros.spatial import AlignedDepth, PinholeIntrinsics  # noqa: E402
from pixellm_ros.world import sample_scene  # noqa: E402

SIZES = ((640, 480), (1280, 720))


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def bench_size(width: int, height: int, scenes: int, repeats: int) -> tuple[dict[str, list[float]], list[int], float]:
    per_target: dict[str, list[float]] = {k: [] for k in ("full", "full, no box", "cropped", "+ 3D fields",
                                                          "+ point cloud")}
    sizes: list[int] = []
    frame_ms: list[float] = []
    header = Header(frame_id="camera")
    for seed in range(scenes):
        scene = sample_scene(np.random.default_rng(seed), (height, width))
        geo = scene.geometry
        depth_msg = depth_to_msg(geo.depth_image("16UC1"), header)
        info_msg = camera_info_msg(PinholeIntrinsics.from_matrix(geo.camera.K, width, height), header)

        def setup() -> AlignedDepth:
            return AlignedDepth(depth_from_msg(depth_msg), intrinsics_from_camera_info(info_msg), (width, height))

        frame_ms.append(median_ms(setup, repeats))
        frame = setup()
        for mask in scene.visible_masks:
            x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
            box = (x, y, x + w, y + h)
            crop = np.ascontiguousarray(mask[y : y + h, x : x + w])
            sizes.append(int(mask.sum()))
            per_target["full"].append(median_ms(lambda: frame.target(mask, box=box), repeats))
            per_target["full, no box"].append(median_ms(lambda: frame.target(mask), repeats))
            per_target["cropped"].append(median_ms(lambda: frame.target(crop, offset=(x, y)), repeats))
            target = frame.target(mask, box=box)
            msg = SegmentedTarget()
            per_target["+ 3D fields"].append(median_ms(lambda: fill_target_3d(msg, target), repeats))
            per_target["+ point cloud"].append(median_ms(lambda: target_cloud_msg(target, header), repeats))
    return per_target, sizes, float(np.median(frame_ms))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    add_smoke_argument(parser)
    args = parser.parse_args()
    if args.smoke:
        args.scenes, args.repeats = 1, 1
    figures = {}
    print("| image | targets | mean mask | full | full, no box | cropped | + 3D fields | + point cloud |"
          " per frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for width, height in SIZES:
        per_target, sizes, frame_ms = bench_size(width, height, args.scenes, args.repeats)
        cells = [f"{np.mean(v):.2f} / {np.percentile(v, 95):.2f} ms" for v in per_target.values()]
        print(f"| {width}x{height} | {len(sizes)} | {np.mean(sizes):.0f} px | " + " | ".join(cells) +
              f" | {frame_ms:.2f} ms |")
        figures[f"{width}x{height}"] = {"targets": len(sizes), "per_frame_ms": frame_ms,
                                        **{name: float(np.mean(v)) for name, v in per_target.items()}}
    print("\ncells: mean / 95th percentile over targets of the median of", args.repeats, "runs; '+' columns are"
          " added to 'full'")
    report(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
