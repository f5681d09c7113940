"""``pixellm-ros demo``: the main job end to end, offline, on the embedded model.

Three processes talk over real DDS, as on a robot:

    camera_sim_node  publishes a generated tabletop scene on ``image_raw`` (rgb8, stamped now)
    pixellm_node     the PixelLM lifecycle node, started with the shipped ``config/pixellm.yaml``
    this process     a client that asks questions about the scene through the ``~/segment`` action,
                     prints the answer text as it streams in, then each target (name, box, score),
                     and writes an overlay PNG per answer into ``--out``

The camera shows one still scene (seeded). The client renders the same scene itself so that it can
ask questions that fit it (the world's question generator) and score each answer against the
scene's exact masks (the evaluator's matching), printing the IoU next to the answer.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .package_files import default_params_file
from .runner import camera_command, node_command

HELP = "camera simulator + PixelLM node + a client asking questions; prints answers, writes overlays"
NODE_NAME = "pixellm"
CAMERA_NAME = "camera_sim"


@dataclass
class DemoQuestion:
    instruction: str
    expected: list[str]  # names of the scene objects that answer it
    gt_masks: np.ndarray  # (K, H, W) bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the overlay PNGs")
    parser.add_argument("--model", default="", help="model folder (default: the embedded model)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--questions", type=int, default=4, help="how many questions to ask")
    parser.add_argument("--seed", type=int, default=3, help="seed of the camera's scene and the questions")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--params-file", type=Path, default=None, help="pixellm_node parameters (default: shipped)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the node and each answer")


def scene_questions(seed: int, height: int, width: int, count: int) -> tuple[np.ndarray, list[DemoQuestion]]:
    """The camera's scene (camera_sim's first world scene for ``seed``) and questions about it."""
    from pixellm_ros.world import format_instruction, make_questions, sample_scene

    scene = sample_scene(np.random.default_rng(seed), (height, width))
    rgb, masks = scene.render()
    questions = make_questions(scene, np.random.default_rng(seed + 1), max_questions=count)
    demo = []
    for q in questions:
        ids = list(q.target_ids)
        names = [f"{scene.objects[i].colour} {scene.objects[i].shape}" for i in ids]
        demo.append(DemoQuestion(format_instruction(q.sentence), names, masks[ids]))
    return rgb, demo


def _start(command: list[str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    # A process group of its own, so Ctrl-C in the terminal reaches only us and we stop it cleanly.
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from lifecycle_msgs.msg import State as LifecycleState
    from lifecycle_msgs.srv import GetState

    from pixellm_ros.action import Segment
    from pixellm_ros.engine.overlay import draw_overlay
    from pixellm_ros.engine.result import SegmentationResult, Target
    from pixellm_ros.evaluation.matching import score_question
    from pixellm_ros.msg import SegmentationResult as ResultMsg

    from .conversions import image_msg_to_rgb, mask_from_msg

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    params = args.params_file or default_params_file()
    scene_rgb, questions = scene_questions(args.seed, args.height, args.width, args.questions)
    cv2.imwrite(str(out / "scene.png"), cv2.cvtColor(scene_rgb, cv2.COLOR_RGB2BGR))

    camera_cmd = camera_command({"source": "world", "seed": args.seed, "width": args.width,
                                 "height": args.height, "rate_hz": 4.0, "scene_period_s": 1e9},
                                node_name=CAMERA_NAME)
    node_cmd = node_command(params, parameters={"model.path": args.model, "model.device": args.device,
                                                "topics.image": "image_raw",
                                                # a busy 2-core machine can delay a frame: be lenient
                                                "max_image_age_s": 3.0}, node_name=NODE_NAME)
    print(f"[demo] starting {CAMERA_NAME} and {NODE_NAME} (logs in {out}/)", flush=True)
    procs = [_start(camera_cmd, out / "camera_sim.log"), _start(node_cmd, out / "pixellm_node.log")]

    rclpy.init(args=["pixellm_demo"])
    node = rclpy.create_node("pixellm_demo_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    frames: dict[tuple[int, int], np.ndarray] = {}

    def on_frame(msg: Image) -> None:
        frames[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = image_msg_to_rgb(msg)
        while len(frames) > 20:
            frames.pop(next(iter(frames)))

    node.create_subscription(Image, "image_raw", on_frame,
                             QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                                        reliability=ReliabilityPolicy.RELIABLE))
    client = ActionClient(node, Segment, f"/{NODE_NAME}/segment")
    # The action server is up from configure on, but the model loads on activate (seconds): ask the
    # lifecycle state, so the first instruction does not meet a node whose newest frame predates the load.
    state_client = node.create_client(GetState, f"/{NODE_NAME}/get_state")
    pending_state = None  # the GetState future in flight, if any
    seen_active = False

    def node_is_active() -> bool:
        nonlocal pending_state, seen_active
        if not seen_active and pending_state is not None and pending_state.done():
            response = pending_state.result()
            pending_state = None
            seen_active = response is not None and response.current_state.id == LifecycleState.PRIMARY_STATE_ACTIVE
        if not seen_active and pending_state is None and state_client.service_is_ready():
            pending_state = state_client.call_async(GetState.Request())
        return seen_active

    def spin_until(done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                return False
            executor.spin_once(timeout_sec=0.1)
        return bool(done())

    status = 0
    scores = []
    try:
        print("[demo] waiting for the node to load the model and for camera frames ...", flush=True)
        if not spin_until(lambda: client.server_is_ready() and bool(frames) and node_is_active(), args.timeout):
            print(f"[demo] the node or the camera did not come up; see {out}/*.log", file=sys.stderr)
            return 1
        time.sleep(1.0)  # let the now active node's image subscription receive a fresh frame

        def ask(instruction: str) -> ResultMsg | None:
            """One goal through the action; its result, or None (with the reason printed) if none came."""
            send = client.send_goal_async(Segment.Goal(instruction=instruction),
                                          feedback_callback=lambda fb: print(fb.feedback.delta, end="", flush=True))
            if not spin_until(send.done, args.timeout) or not send.result().accepted:
                print("\n[demo] goal not accepted", file=sys.stderr)
                return None
            result_future = send.result().get_result_async()
            if not spin_until(result_future.done, args.timeout):
                print("\n[demo] no answer in time", file=sys.stderr)
                return None
            return result_future.result().result.result

        for number, question in enumerate(questions, start=1):
            print(f"\n[{number}] {question.instruction}", flush=True)
            print("    answer: ", end="", flush=True)
            msg = ask(question.instruction)
            # Frames can still come late (a loaded 2-core machine; before the shared-memory profile,
            # Fast DDS dropped most 0.9 MB frames to the node for seconds): the node then refuses
            # with a clear error, and a client asks again once frames flow. Bounded by --timeout.
            deadline = time.monotonic() + args.timeout
            while (msg is not None and msg.status in (ResultMsg.STATUS_STALE_IMAGE, ResultMsg.STATUS_NO_IMAGE)
                   and time.monotonic() < deadline):
                print(f"\n    (the node refused: {msg.error}; asking again)\n    answer: ", end="", flush=True)
                spin_until(lambda: False, 0.5)
                msg = ask(question.instruction)
            if msg is None:
                status = 1
                continue
            print()
            if msg.status != ResultMsg.STATUS_OK:
                print(f"    error (status {msg.status}): {msg.error}")
                status = 1
                continue
            size = (msg.image_width, msg.image_height)
            targets = [Target(name=t.name, mask=mask_from_msg(t, size),
                              box=(t.box.x_offset, t.box.y_offset, t.box.x_offset + t.box.width,
                                   t.box.y_offset + t.box.height), score=float(t.score)) for t in msg.targets]
            for t in targets:
                print(f"    - {t.name!r}: box {t.box}, score {t.score:.2f}, {int(t.mask.sum())} px")
            score = score_question([t.mask for t in targets], list(question.gt_masks))
            scores.append(score.iou)
            print(f"    expected: {', '.join(question.expected) or 'nothing'}; IoU vs the scene's masks {score.iou:.2f}"
                  f"   ({msg.total_ms:.0f} ms, {msg.generated_tokens} tokens)")
            frame = frames.get((msg.header.stamp.sec, msg.header.stamp.nanosec), scene_rgb)
            overlay = draw_overlay(frame, SegmentationResult(text=msg.answer, targets=targets))
            path = out / f"answer_{number}.png"
            cv2.imwrite(str(path), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            print(f"    overlay: {path}")
        if scores:
            print(f"\n[demo] {len(scores)} answers, mean IoU {np.mean(scores):.2f}; overlays in {out}/")
    except KeyboardInterrupt:
        status = 130
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        for proc in procs:
            _stop(proc)
    return status
