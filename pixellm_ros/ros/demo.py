"""``pixellm-ros demo``: the main job end to end, offline, on the embedded model.

Three processes talk over real DDS, as on a robot:

    camera_sim_node  publishes a generated tabletop scene on ``image_raw`` (rgb8, stamped now)
    pixellm_node     the PixelLM lifecycle node, started with the shipped ``config/pixellm.yaml``
    this process     a client (``pixellm_ros.ros.client``) that asks questions about the scene through
                     the ``~/segment`` action, prints the answer text as it streams in, then each
                     target (name, box, score, and its 3D position next to the scene's truth), and
                     writes an overlay PNG per answer into ``--out``

The camera shows one still scene (seeded). The client renders the same scene itself so that it can
ask questions that fit it (the world's question generator) and score each answer against the
scene's exact masks (the evaluator's matching), printing the IoU next to the answer.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class DemoScene:
    """What the camera shows: its rgb, every object's mask and 3D truth, and the questions."""

    rgb: np.ndarray
    masks: np.ndarray  # (K, H, W) bool, one per scene object
    names: list[str]  # "colour shape" per scene object
    centroids: list[np.ndarray]  # (3,) metres, camera optical frame, per scene object
    questions: list[DemoQuestion]


def scene_questions(seed: int, height: int, width: int, count: int) -> DemoScene:
    """The camera's scene (camera_sim's first world scene for ``seed``) and questions about it."""
    from pixellm_ros.world import format_instruction, make_questions, sample_scene

    scene = sample_scene(np.random.default_rng(seed), (height, width))
    rgb, masks = scene.render()
    names = [f"{obj.colour} {obj.shape}" for obj in scene.objects]
    questions = make_questions(scene, np.random.default_rng(seed + 1), max_questions=count)
    demo = [DemoQuestion(format_instruction(q.sentence), [names[i] for i in q.target_ids], masks[list(q.target_ids)])
            for q in questions]
    centroids = [scene.geometry.object_centroid(i) for i in range(len(scene.objects))]
    return DemoScene(rgb, masks, names, centroids, demo)


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


def _position(target: object) -> np.ndarray:
    c = target.centroid  # type: ignore[attr-defined]
    return np.array([c.x, c.y, c.z])


def describe_3d(mask: np.ndarray, target: object, scene: DemoScene) -> str:
    """The target's position next to the truth of the scene object its mask overlaps most."""
    if not target.has_3d:  # type: ignore[attr-defined]
        return f"no 3D: {target.no_3d_reason}"  # type: ignore[attr-defined]
    overlap = (scene.masks & mask[None]).sum(axis=(1, 2)) / np.maximum((scene.masks | mask[None]).sum(axis=(1, 2)), 1)
    best = int(np.argmax(overlap))
    found, truth = _position(target), scene.centroids[best]
    return (f"at ({found[0]:+.3f}, {found[1]:+.3f}, {found[2]:.3f}) m; the {scene.names[best]} (IoU {overlap[best]:.2f}) "
            f"is at ({truth[0]:+.3f}, {truth[1]:+.3f}, {truth[2]:.3f}) m: {1000 * np.linalg.norm(found - truth):.0f} mm off")


def run(args: argparse.Namespace) -> int:
    from sensor_msgs.msg import Image

    from pixellm_ros.engine.overlay import draw_overlay
    from pixellm_ros.engine.result import SegmentationResult, Target
    from pixellm_ros.evaluation.matching import score_question
    from pixellm_ros.msg import SegmentationResult as ResultMsg

    from .client import NodeNotActiveError, PixelLMClient
    from .conversions import image_msg_to_rgb, mask_from_msg
    from .qos import image_qos

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    params = args.params_file or default_params_file()
    scene = scene_questions(args.seed, args.height, args.width, args.questions)
    cv2.imwrite(str(out / "scene.png"), cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR))

    camera_cmd = camera_command({"source": "world", "seed": args.seed, "width": args.width,
                                 "height": args.height, "rate_hz": 4.0, "scene_period_s": 1e9},
                                node_name=CAMERA_NAME)
    node_cmd = node_command(params, parameters={"model.path": args.model, "model.device": args.device,
                                                "topics.image": "image_raw", "depth.enabled": True,
                                                # a busy 2-core machine can delay a frame: be lenient
                                                "max_image_age_s": 3.0}, node_name=NODE_NAME)
    print(f"[demo] starting {CAMERA_NAME} and {NODE_NAME} (logs in {out}/)", flush=True)
    procs = [_start(camera_cmd, out / "camera_sim.log"), _start(node_cmd, out / "pixellm_node.log")]
    client = PixelLMClient(f"/{NODE_NAME}", name="pixellm_demo_client")
    frames: dict[tuple[int, int], np.ndarray] = {}

    def on_frame(msg: Image) -> None:
        frames[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = image_msg_to_rgb(msg)
        while len(frames) > 20:
            frames.pop(next(iter(frames)))

    client.ros_node.create_subscription(Image, "image_raw", on_frame, image_qos("reliable", depth=5))
    status = 0
    scores = []
    try:
        print("[demo] waiting for the node to load the model and for camera frames ...", flush=True)
        deadline = time.monotonic() + args.timeout
        while not frames or any(p.poll() is not None for p in procs):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                print(f"[demo] the node or the camera did not come up; see {out}/*.log", file=sys.stderr)
                return 1
            time.sleep(0.1)
        try:
            client.wait_until_active(max(1.0, deadline - time.monotonic()))
        except NodeNotActiveError as error:
            print(f"[demo] {error}; see {out}/pixellm_node.log", file=sys.stderr)
            return 1
        time.sleep(1.0)  # let the now active node's image subscription receive a fresh frame

        def ask(instruction: str) -> ResultMsg:
            return client.segment(instruction, on_text=lambda delta: print(delta, end="", flush=True),
                                  timeout=args.timeout)

        for number, question in enumerate(scene.questions, start=1):
            print(f"\n[{number}] {question.instruction}", flush=True)
            print("    answer: ", end="", flush=True)
            msg = ask(question.instruction)
            # Frames can still come late (a loaded 2-core machine; before the shared-memory profile,
            # Fast DDS dropped most 0.9 MB frames to the node for seconds): the node then refuses
            # with a clear error, and a client asks again once frames flow. Bounded by --timeout.
            retry_until = time.monotonic() + args.timeout
            while (msg.status in (ResultMsg.STATUS_STALE_IMAGE, ResultMsg.STATUS_NO_IMAGE)
                   and time.monotonic() < retry_until):
                print(f"\n    (the node refused: {msg.error}; asking again)\n    answer: ", end="", flush=True)
                time.sleep(0.5)
                msg = ask(question.instruction)
            print()
            if msg.status != ResultMsg.STATUS_OK:
                print(f"    error (status {msg.status}): {msg.error}")
                status = 1
                continue
            size = (msg.image_width, msg.image_height)
            targets = [Target(name=t.name, mask=mask_from_msg(t, size),
                              box=(t.box.x_offset, t.box.y_offset, t.box.x_offset + t.box.width,
                                   t.box.y_offset + t.box.height), score=float(t.score)) for t in msg.targets]
            for target, target_msg in zip(targets, msg.targets):
                print(f"    - {target.name!r}: box {target.box}, score {target.score:.2f}, {int(target.mask.sum())} px")
                print(f"      {describe_3d(target.mask, target_msg, scene)}")
            score = score_question([t.mask for t in targets], list(question.gt_masks))
            scores.append(score.iou)
            print(f"    expected: {', '.join(question.expected) or 'nothing'}; IoU vs the scene's masks {score.iou:.2f}"
                  f"   ({msg.total_ms:.0f} ms, {msg.generated_tokens} tokens)")
            frame = frames.get((msg.header.stamp.sec, msg.header.stamp.nanosec), scene.rgb)
            overlay = draw_overlay(frame, SegmentationResult(text=msg.answer, targets=targets))
            path = out / f"answer_{number}.png"
            cv2.imwrite(str(path), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            print(f"    overlay: {path}")
        if scores:
            print(f"\n[demo] {len(scores)} answers, mean IoU {np.mean(scores):.2f}; overlays in {out}/")
    except (KeyboardInterrupt, TimeoutError) as error:
        if isinstance(error, TimeoutError):
            print(f"\n[demo] {error}", file=sys.stderr)
        status = 130 if isinstance(error, KeyboardInterrupt) else 1
    finally:
        client.close()
        for proc in procs:
            _stop(proc)
    return status
