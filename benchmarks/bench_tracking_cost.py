"""What tracking costs per camera frame on ONE core: ``Tracker.step`` with N tracks at 640x480.

Run:  source scripts/env.sh && OMP_NUM_THREADS=1 python benchmarks/bench_tracking_cost.py [--tracks 5]
      [--seconds 10] [--smoke]

A moving-world sequence (``world.motion``) at 30 Hz, its frames rendered first (not timed); the
N largest objects seeded once a second from their exact masks, as answers would. Timed: every
``step`` (flow, motion fits, alignment, visibility, 3D) without and with depth, and every
``update`` (an answer about the current frame), with ``cv2.setNumThreads(1)``, as the CPU time of
the calling thread (``time.thread_time``: what the work costs one core, not how long it waited for
one on a busy machine; ``--wall`` times wall-clock instead). Printed: mean, median and 95th
percentile per frame in ms, and the machine's load average while it ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import smoke  # noqa: E402

from pixellm_ros.spatial import AlignedDepth, DepthImage, PinholeIntrinsics  # noqa: E402
from pixellm_ros.tracking import Detection, Tracker, TrackerOptions  # noqa: E402
from pixellm_ros.world.motion import MovingWorld  # noqa: E402


CLOCK = time.thread_time


def run(frames: list, depths: list, tracks: int, with_depth: bool, period: int) -> tuple[list[float], list[float]]:
    """Per-frame step times and per-answer update times (seconds)."""
    tracker = Tracker(TrackerOptions())
    steps, updates = [], []
    wanted: list[int] = []
    for index, frame in enumerate(frames):
        depth = depths[index] if with_depth else None
        start = CLOCK()
        tracker.step(frame.rgb, frame.time_s, depth)
        steps.append(CLOCK() - start)
        if index % period == 0:
            if not wanted:  # the N largest objects of the first frame
                areas = frame.masks.reshape(len(frame.masks), -1).sum(axis=1)
                wanted = [int(frame.object_ids[k]) for k in np.argsort(-areas)[:tracks]]
            detections = [Detection(frame.scene.objects[k].name, frame.masks[k]) for k, o in
                          enumerate(frame.object_ids) if int(o) in wanted and frame.masks[k].sum() >= 64]
            start = CLOCK()
            tracker.update(detections, frame.time_s)
            updates.append(CLOCK() - start)
    live = len(tracker.tracks)
    print(f"  tracks live at the end: {live}")
    return steps[1:], updates


def describe(name: str, times: list[float]) -> str:
    ms = 1000.0 * np.asarray(times)
    return (f"{name:<26} mean {ms.mean():6.2f} ms  median {np.median(ms):6.2f} ms  p95 {np.percentile(ms, 95):6.2f} ms"
            f"  ({len(ms)} calls)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="one second (tests)")
    parser.add_argument("--wall", action="store_true", help="time wall-clock instead of the thread's CPU time")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.thread_time
    if args.smoke:
        args.seconds = 1.0
    cv2.setNumThreads(1)
    world = MovingWorld.sample(np.random.default_rng(args.seed), (480, 640), args.seconds, min_objects=6, max_objects=8)
    frames = list(world.frames(args.rate, args.seconds))
    cam = world.camera
    intrinsics = PinholeIntrinsics.from_matrix(cam.K, cam.width, cam.height, "plumb_bob", [0.0] * 5)
    depths = [AlignedDepth(DepthImage(f.depth_image("16UC1")), intrinsics, (cam.width, cam.height)) for f in frames]
    period = max(1, round(args.rate))
    load_before = os.getloadavg()[0]
    print(f"{len(frames)} frames 640x480, {args.tracks} tracks seeded every {period} frames,"
          f" {'wall-clock' if args.wall else 'thread CPU'} time, cv2 threads"
          f" {cv2.getNumThreads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    figures = {}
    for with_depth in (False, True):
        steps, updates = run(frames, depths, args.tracks, with_depth, period)
        label = "with depth (3D fields)" if with_depth else "2D"
        print(describe(f"step, {label}", steps))
        print(describe(f"update, {label}", updates))
        key = "3d" if with_depth else "2d"
        figures[f"step_ms_median_{key}"] = float(np.median(steps)) * 1e3
        figures[f"update_ms_median_{key}"] = float(np.median(updates)) * 1e3
    print(f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    smoke.report(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
