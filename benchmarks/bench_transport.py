"""Camera frames a best-effort subscriber receives: Fast DDS defaults against the shipped profile.

Run:  source scripts/env.sh && python benchmarks/bench_transport.py [--seconds S] [--rate HZ]

camera_sim publishes rgb8 frames (a test pattern) from its own process; this process subscribes
with the node's camera QoS (best effort, depth 1) and counts what arrives in a window of S seconds
after the first frame. The camera process runs either with Fast DDS's defaults (512 KB
shared-memory segment: a profile file holding no profile is named, so ours is not applied) or
with config/fastdds_large_frames.xml (16 MB), as every pixellm_ros executable starts by default.
Printed per frame size: frames delivered of those due, the longest gap between two frames, and the
ratio profile / defaults of frames delivered.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from smoke import add_smoke_argument, report  # noqa: E402

from pixellm_ros.ros.qos import image_qos  # noqa: E402
from pixellm_ros.ros.runner import camera_command  # noqa: E402
from pixellm_ros.ros.spinning import BackgroundNode  # noqa: E402
from pixellm_ros.ros.transport import PROFILE_ENV_VARS, large_frames_profile  # noqa: E402

SIZES = ((640, 480), (1280, 720), (1920, 1080))
NO_PROFILE_XML = '<?xml version="1.0" encoding="UTF-8"?>\n<dds xmlns="http://www.eprosima.com"><profiles/></dds>\n'


def delivered(client: BackgroundNode, topic: str, profile: Path, width: int, height: int, rate_hz: float,
              seconds: float, domain_id: int) -> tuple[int, float]:
    """(frames received in the window, longest gap in seconds) for one camera configuration."""
    from sensor_msgs.msg import Image

    arrivals: list[float] = []
    lock = threading.Lock()

    def on_frame(_msg: Image) -> None:
        with lock:
            arrivals.append(time.monotonic())

    subscription = client.node.create_subscription(Image, topic, on_frame, image_qos("best_effort", 1))
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV_VARS}
    env.update({PROFILE_ENV_VARS[0]: str(profile), "ROS_DOMAIN_ID": str(domain_id), "OMP_NUM_THREADS": "1"})
    command = camera_command({"source": "pattern", "rate_hz": rate_hz, "width": width, "height": height},
                             {"image_raw": topic}, "bench_transport_camera")
    camera = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not arrivals and time.monotonic() < deadline:
            time.sleep(0.05)
        if not arrivals:
            raise RuntimeError(f"no frame from the camera at {width}x{height}")
        start = arrivals[0]
        time.sleep(seconds + 0.1)
    finally:
        camera.send_signal(signal.SIGINT)
        camera.wait(timeout=15)
        client.node.destroy_subscription(subscription)
    with lock:
        window = [t for t in arrivals if start <= t <= start + seconds]
    gaps = [b - a for a, b in zip(window, window[1:])]
    return len(window), max(gaps, default=seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="counting window per configuration")
    parser.add_argument("--rate", type=float, default=10.0, help="camera frames per second")
    parser.add_argument("--domain-id", type=int, default=91)
    add_smoke_argument(parser)
    args = parser.parse_args()
    sizes = SIZES[:1] if args.smoke else SIZES
    if args.smoke:
        args.seconds = 1.0
    profile = large_frames_profile()
    if profile is None:
        print("config/fastdds_large_frames.xml not found", file=sys.stderr)
        return 2
    due = int(args.rate * args.seconds) + 1
    client = BackgroundNode("bench_transport", args.domain_id)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        defaults = Path(tmp) / "fast_dds_defaults.xml"
        defaults.write_text(NO_PROFILE_XML)
        try:
            for n, (width, height) in enumerate(sizes):
                topic = f"/bench_transport/image_{n}"
                base = delivered(client, topic + "_defaults", defaults, width, height, args.rate, args.seconds,
                                 args.domain_id)
                ours = delivered(client, topic + "_profile", profile, width, height, args.rate, args.seconds,
                                 args.domain_id)
                rows.append((width, height, base, ours))
        finally:
            client.close()
    print(f"\nbest-effort subscriber, camera at {args.rate:g} Hz, {args.seconds:g} s window ({due} frames due)\n")
    print("| frame | MB | Fast DDS defaults: frames, longest gap | shipped profile: frames, longest gap | profile / defaults |")
    print("| --- | --- | --- | --- | --- |")
    for width, height, (base_n, base_gap), (ours_n, ours_gap) in rows:
        ratio = f"{ours_n / base_n:.2f}x" if base_n else "inf"
        print(f"| {width}x{height} rgb8 | {width * height * 3 / 1e6:.1f} | {base_n}/{due}, {base_gap:.2f} s "
              f"| {ours_n}/{due}, {ours_gap:.2f} s | {ratio} |")
    report({f"{width}x{height}": {"due": due, "defaults": base_n, "profile": ours_n}
            for width, height, (base_n, _), (ours_n, _) in rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
