"""How well tracks follow the moving world's objects between answers, scored by py-motmetrics.

Run:  source scripts/env.sh && python benchmarks/bench_tracking.py [--sequences N] [--seconds S]
      [--seeding gt|model|both] [--picture docs/tracking_strip.jpg] [--json out.json] [--smoke]

Sequences of ``world.motion.MovingWorld`` (640x480, a camera at ``--rate`` 30 Hz on its slow
pan-and-dolly path, objects pushed and hiding one another) with their exact per-frame masks and
16UC1 depth. Two seedings:

``gt``     the tracker alone: every object in view (its exact mask and name) given to
           ``Tracker.update`` once every ``--seed-period`` seconds, about that same frame.
``model``  the whole system: the embedded model (``PixelLMEngine.from_pretrained()``, or
           ``--model-dir``) asked a world question about the frame it is on; its answer reaches
           the tracker after the model's measured latency (``--latency``: by default the call's CPU
           time over torch's threads, what it takes on an idle machine; a shared machine's wall
           clock inflates it many times), turned into frames at ``--rate``, about the frame it
           was asked on; then it is asked again on the frame the answer arrived with (a standing
           instruction). The ground truth is the question's targets.

Scores (``motmetrics``; a track matches an object at mask IoU >= 0.5; objects less than 25%
visible or under 64 pixels are not counted, and neither are tracks lying mostly on them):
mean per-frame IoU (every object-frame counts, 0 where no track matches it), id switches per
1,000 object-frames, IDF1, MOTA, and the mean IoU by frames since the answer that seeded the
frame (the decay between answers); ``mean_iou_ungated`` takes each object's best one-to-one
IoU whatever its value (Hungarian, scipy), which says more of a weak model's masks. For ``model`` also the model's own mean IoU on the frames it
was asked on, scored the same way (the aim: the tracked IoU no more than 0.05 below it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import smoke  # noqa: E402

from pixellm_ros.spatial import AlignedDepth, DepthImage, PinholeIntrinsics  # noqa: E402
from pixellm_ros.tracking import Detection, Tracker, TrackerOptions, TrackView  # noqa: E402
from pixellm_ros.tracking.matching import Candidate, mask_iou  # noqa: E402
from pixellm_ros.world.motion import MovingWorld, WorldFrame  # noqa: E402

MATCH_IOU = 0.5
MIN_VISIBLE_FRACTION = 0.25
MIN_VISIBLE_PIXELS = 64
MODEL_ID_BASE = 1_000_000  # hypothesis ids of the model's own masks, apart from track ids


def crop(mask: np.ndarray) -> Candidate:
    """A full-frame mask as a tight crop."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return Candidate(None, (0, 0), None)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Candidate(mask[y0:y1, x0:x1], (int(x0), int(y0)), None)


def aligned_depth(frame: WorldFrame) -> AlignedDepth:
    cam = frame.camera
    intrinsics = PinholeIntrinsics.from_matrix(cam.K, cam.width, cam.height, "plumb_bob", [0.0] * 5)
    return AlignedDepth(DepthImage(frame.depth_image("16UC1")), intrinsics, image_size=(cam.width, cam.height))


@dataclass
class Scorer:
    """One motmetrics accumulator plus the IoU of every match, by frames since the seeding answer."""

    name: str
    acc: mm.MOTAccumulator = field(default_factory=lambda: mm.MOTAccumulator(auto_id=False))
    frames: int = 0
    objects: int = 0
    iou_sum: float = 0.0
    iou_any_sum: float = 0.0
    decay: dict[int, list[float]] = field(default_factory=dict)  # frames since answer -> [iou sum, objects]

    def frame(self, frame: WorldFrame, wanted: set[int] | None, hyps: dict[int, Candidate],
              since_answer: int | None = None) -> None:
        """Score hypotheses (id -> mask crop) against the frame's objects (``wanted`` only, if given)."""
        counted: dict[int, Candidate] = {}
        ignored: list[Candidate] = []
        for k, object_id in enumerate(frame.object_ids):
            if wanted is not None and int(object_id) not in wanted:
                continue
            mask = frame.masks[k]
            gt = crop(mask)
            if frame.visible_fraction[k] >= MIN_VISIBLE_FRACTION and int(mask.sum()) >= MIN_VISIBLE_PIXELS:
                counted[int(object_id)] = gt
            else:
                ignored.append(gt)
        # A hypothesis lying mostly on an object that is not counted (mostly hidden) is not counted either.
        kept = {}
        for hid, hyp in hyps.items():
            best_counted = max((_overlap(hyp, g) for g in counted.values()), default=0)
            best_ignored = max((_overlap(hyp, g) for g in ignored), default=0)
            if best_ignored <= best_counted:
                kept[hid] = hyp
        gt_ids, hyp_ids = list(counted), list(kept)
        iou = np.array([[mask_iou(counted[g], kept[h]) for h in hyp_ids] for g in gt_ids]).reshape(len(gt_ids),
                                                                                                  len(hyp_ids))
        if iou.size:  # the best one-to-one IoU, whatever its value (a weak model's masks rarely reach 0.5)
            rows, cols = linear_sum_assignment(-iou)
            self.iou_any_sum += float(iou[rows, cols].sum())
        dist = np.where(iou >= MATCH_IOU, 1.0 - iou, np.nan)
        self.acc.update(gt_ids, hyp_ids, dist, frameid=self.frames)
        events = self.acc.mot_events.loc[self.frames] if len(gt_ids) or len(hyp_ids) else None
        matched = 0.0
        if events is not None:
            hits = events[events["Type"].isin(["MATCH", "SWITCH"])]
            matched = float((1.0 - hits["D"]).sum())
        self.frames += 1
        self.objects += len(gt_ids)
        self.iou_sum += matched
        if since_answer is not None:
            bucket = self.decay.setdefault(since_answer, [0.0, 0])
            bucket[0] += matched
            bucket[1] += len(gt_ids)

    def summary(self) -> dict[str, float]:
        metrics = mm.metrics.create().compute(self.acc, metrics=["idf1", "mota", "num_switches", "num_matches",
                                                                 "num_misses", "num_false_positives"], name=self.name)
        row = metrics.iloc[0]
        return {"frames": self.frames, "object_frames": self.objects,
                "mean_iou": self.iou_sum / max(self.objects, 1),
                "mean_iou_ungated": self.iou_any_sum / max(self.objects, 1),
                "id_switches": int(row["num_switches"]),
                "switches_per_1000": 1000.0 * float(row["num_switches"]) / max(self.objects, 1),
                "idf1": float(row["idf1"]), "mota": float(row["mota"]),
                "misses": int(row["num_misses"]), "false_positives": int(row["num_false_positives"])}


def _overlap(a: Candidate, b: Candidate) -> int:
    if a.mask is None or b.mask is None:
        return 0
    return round(mask_iou(a, b) * 1e6)


def track_hyps(tracks: tuple[TrackView, ...]) -> dict[int, Candidate]:
    return {t.track_id: Candidate(t.mask, t.offset, None) for t in tracks if t.status == "tracking"}


def gt_detections(frame: WorldFrame) -> list[Detection]:
    """Every object in view that is seen enough, as an answer would give it."""
    out = []
    for k, object_id in enumerate(frame.object_ids):
        mask = frame.masks[k]
        if frame.visible_fraction[k] >= MIN_VISIBLE_FRACTION and int(mask.sum()) >= MIN_VISIBLE_PIXELS:
            out.append(Detection(frame.scene.objects[k].name, mask, 1.0))
    return out


def run_gt(world: MovingWorld, args: argparse.Namespace, options: TrackerOptions, scorer: Scorer,
           strip: list[np.ndarray] | None = None) -> None:
    tracker = Tracker(options)
    period = max(1, round(args.seed_period * args.rate))
    frames = round(args.seconds * args.rate)
    strip_every = max(1, frames // args.strip_frames) if strip is not None else 0
    for index in tqdm(range(frames), desc="gt seeding", leave=False, disable=args.quiet):
        frame = world.frame(index, args.rate)
        tracks = tracker.step(frame.rgb, frame.time_s, aligned_depth(frame) if args.depth else None).tracks
        if index % period == 0:
            tracker.update(gt_detections(frame), frame.time_s)
            tracks = tracker.tracks
        scorer.frame(frame, None, track_hyps(tracks), index % period)
        if strip is not None and index % strip_every == strip_every // 2 and len(strip) < args.strip_frames:
            strip.append(draw_tracks(frame.rgb, tracks, frame.time_s))


def run_model(world: MovingWorld, engine, args: argparse.Namespace, options: TrackerOptions, seed: int,
              tracked: Scorer, own: Scorer, latencies: list[float]) -> str:
    from pixellm_ros.world import format_instruction, make_questions

    first = world.frame(0, args.rate)
    questions = [q for q in make_questions(first.scene, np.random.default_rng(seed + 1), max_questions=8)
                 if q.target_ids]
    # The shipped model reads colours best (README): a colour question when there is one.
    question = next((q for q in questions if q.kind == "colour"), questions[0])
    wanted = {int(first.object_ids[i]) for i in question.target_ids}
    import torch

    instruction = format_instruction(question.sentence)
    tracker = Tracker(options)
    frames = round(args.seconds * args.rate)
    pending: tuple[int, float, object] | None = None  # (arrival frame, asked stamp, result)
    last_answer = None
    for index in tqdm(range(frames), desc="model seeding", leave=False, disable=args.quiet):
        frame = world.frame(index, args.rate)
        tracks = tracker.step(frame.rgb, frame.time_s, aligned_depth(frame) if args.depth else None).tracks
        if pending is not None and index >= pending[0]:
            _, asked_s, result = pending
            tracker.update([Detection(t.name, t.mask, t.score) for t in result.targets], asked_s)
            tracks = tracker.tracks
            pending, last_answer = None, index
        if pending is None:  # standing instruction: ask about this frame
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            result = engine.segment(frame.rgb, instruction)
            if args.latency == "cpu":  # what the call takes on an idle machine with torch's threads
                latency = (time.process_time() - cpu_start) / torch.get_num_threads()
            elif args.latency == "wall":
                latency = time.perf_counter() - wall_start
            else:
                latency = float(args.latency)
            latencies.append(latency)
            own.frame(frame, wanted, {MODEL_ID_BASE + i: crop(t.mask) for i, t in enumerate(result.targets)})
            pending = (index + max(1, math.ceil(latency * args.rate)), frame.time_s, result)
        if last_answer is not None:
            tracked.frame(frame, wanted, track_hyps(tracks), index - last_answer)
    return instruction


PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def draw_tracks(rgb: np.ndarray, tracks: tuple[TrackView, ...], time_s: float) -> np.ndarray:
    """The frame with each tracked mask tinted and outlined in its id's colour, its id written on it."""
    out = rgb.copy()
    for t in tracks:
        if t.status != "tracking" or t.mask is None:
            continue
        colour = PALETTE[t.track_id % len(PALETTE)]
        full = t.full_mask(rgb.shape[0], rgb.shape[1])
        out[full] = (0.5 * out[full] + 0.5 * np.array(colour)).astype(np.uint8)
        contours, _ = cv2.findContours(full.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 2)
        x0, y0 = t.box[:2]
        cv2.putText(out, f"#{t.track_id}", (x0, max(14, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3)
        cv2.putText(out, f"#{t.track_id}", (x0, max(14, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 1)
    for t in tracks:
        if t.status == "coasting":
            cv2.putText(out, f"#{t.track_id} hidden", (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                        (255, 255, 255), 2)
    cv2.putText(out, f"t = {time_s:.1f} s", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return out


def tracker_options(pairs: list[str]) -> TrackerOptions:
    """TrackerOptions with NAME=VALUE overrides (bool, int, float or str, as the default is)."""
    defaults = TrackerOptions()
    values = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if not hasattr(defaults, name):
            raise SystemExit(f"--option {pair}: TrackerOptions has no field '{name}'")
        default = getattr(defaults, name)
        values[name] = text.lower() in ("1", "true", "yes") if isinstance(default, bool) else type(default)(text)
    return replace(defaults, **values)


def decay_table(scorer: Scorer, period: int) -> dict[int, float]:
    return {k: v[0] / v[1] for k, v in sorted(scorer.decay.items()) if v[1] and k < period}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    parser.add_argument("--seed-period", type=float, default=1.0, help="gt seeding: seconds between answers")
    parser.add_argument("--seeding", choices=("gt", "model", "both"), default="both")
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--no-depth", dest="depth", action="store_false", help="track without depth (2D only)")
    parser.add_argument("--model-dir", default=None, help="model folder (default: the embedded model)")
    parser.add_argument("--latency", default="cpu",
                        help="model seeding: when an answer arrives after its frame: 'cpu' (default: the call's"
                             " CPU time over torch's threads, what it takes on an idle machine), 'wall' (its"
                             " wall-clock time, which a busy shared machine inflates many times), or seconds")
    parser.add_argument("--picture", type=Path, default=None, help="write a strip of tracked frames here")
    parser.add_argument("--strip-frames", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="a few seconds of one short sequence (the test suite)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a TrackerOptions field for this run (e.g. align=false, flow_preset=medium); repeatable")
    args = parser.parse_args()
    if args.smoke:
        args.sequences, args.seconds = 1, min(args.seconds, 2.5)
    options = tracker_options(args.option)
    period = max(1, round(args.seed_period * args.rate))
    report: dict[str, object] = {"rate_hz": args.rate, "sequences": args.sequences, "seconds": args.seconds,
                                 "depth": args.depth, "options": args.option}
    worlds = [MovingWorld.sample(np.random.default_rng(args.first_seed + s), (480, 640), args.seconds)
              for s in range(args.sequences)]
    started = time.perf_counter()
    if args.seeding in ("gt", "both"):
        scorer = Scorer("gt")
        strip: list[np.ndarray] | None = [] if args.picture else None
        for s, world in enumerate(worlds):
            run_gt(world, args, options, scorer, strip if s == 0 else None)
        report["gt"] = scorer.summary() | {"iou_by_frames_since_answer": decay_table(scorer, period)}
        if args.picture and strip:
            picture = np.concatenate([cv2.resize(f, (320, 240), interpolation=cv2.INTER_AREA) for f in strip], axis=1)
            args.picture.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.picture), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    if args.seeding in ("model", "both"):
        from pixellm_ros.engine import PixelLMEngine

        engine = PixelLMEngine.from_pretrained(model_dir=args.model_dir)
        tracked, own, latencies = Scorer("model tracked"), Scorer("model own"), []
        instructions = [run_model(world, engine, args, options, args.first_seed + s, tracked, own, latencies)
                        for s, world in enumerate(worlds)]
        report["model"] = {"model": args.model_dir or "embedded (current shipped model)", "latency": args.latency,
                           "instructions": instructions,
                           "latency_s_median": float(np.median(latencies)), "answers": len(latencies),
                           "tracked": tracked.summary() | {"iou_by_frames_since_answer": decay_table(tracked, 10**6)},
                           "own": own.summary()}
    report["wall_s"] = time.perf_counter() - started
    print(json.dumps(report, indent=1, default=float))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))
    smoke.report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
