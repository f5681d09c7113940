"""`pixellm-ros train`: train the embedded PixelLM on the tabletop world, on the CPU.

    pixellm-ros train --out runs/embedded [--recipe cpu|tiny] [--resume] [--export pixellm_ros/assets/default_model]
                      [--stage1-from MODEL_DIR] [--eval-scenes 200 [--eval-camera-scenes 100] [--compare-with REPORT.json | MODEL_DIR]] [--<setting> value ...]
                      [--memory both|pages|keep|default]

Every setting of ``training.settings.TrainSettings`` is an option (``--stage2-steps 800``); the
recipe gives the rest (``cpu``: the shipped model's). The run folder is described in
``training.run``; ``--resume`` continues a stopped run from its last checkpoint (its saved settings
win over the recipe); ``--stage1-from`` takes stage 1 from a model folder a run exported (stage 2
only: its parts and prompt head, ``training.stage1.load_stage1_parts``); ``--export`` copies the model folder there; ``--eval-scenes N`` then scores
it through the engine on N held-out scenes (``evaluation.world_eval.evaluate_run``: per kind, per target count,
templated and paraphrased instructions, paired bootstrap against ``--compare-with``); what a run's first
invocation asked for after training (``AFTER_OPTIONS``) is kept in the run folder, and a resumed run
does it too unless told otherwise. ``--memory``:
how the process takes its memory (``training.memory``; default: as the C library and torch come).
With ``fresh_process_minutes`` (the recipe's 15) the command trains in child processes that each
resume the run from its checkpoint and end after that many minutes (``supervise``): a long process's
heap slows its steps, a fresh one's does not.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .memory import MODES, PAGES_ENV, take_memory
from .settings import RECIPES, TrainSettings, add_setting_options, recipe, settings_from_args

HELP = "train the embedded PixelLM on the tabletop world (2 CPU cores: 2.5 hours or more, by machine; see the README)"
AFTER_FILE = "after_training.json"
CHILD_ENV = "PIXELLM_TRAIN_PROCESS"  # set in the processes a run's first one starts (their number): they train
FRESH_PROCESS_EXIT = 75  # a child's exit status when its time is up and a fresh process should go on


@dataclass(frozen=True)
class AfterTraining:
    """What is done with the trained model: the options of these names (kept in the run folder)."""

    export: str | None = None
    eval_scenes: int = 0
    eval_camera_scenes: int = 0
    compare_with: str | None = None


AFTER_OPTIONS = tuple(f.name for f in fields(AfterTraining))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run folder (scenes, checkpoints, log, curves, model/)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=None, help="preset of the settings (default cpu)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--export", default=None, help="also copy the final model folder here")
    parser.add_argument("--stage1-from", default=None, metavar="MODEL_DIR",
                        help="take stage 1 (object tokenizer, pixel decoder, prompt head) from a model folder a run "
                             "exported, e.g. pixellm_ros/assets/default_model, and train stage 2 only")
    parser.add_argument("--eval-scenes", type=int, default=None,
                        help="after training: held-out scenes for the evaluation against the shipped model (default "
                             "0: none; with --resume, the run's first invocation's)")
    parser.add_argument("--eval-camera-scenes", type=int, default=None,
                        help="with --eval-scenes: also this many other held-out scenes at a camera's 480x640 "
                             "(templated; default 0; with --resume, the run's first invocation's)")
    parser.add_argument("--compare-with", default=None,
                        help="with --eval-scenes: a report JSON of the same scenes, or a model folder, to compare with")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (the log still has every line)")
    parser.add_argument("--memory", choices=sorted(MODES), default="default",
                        help="the process's memory settings (training.memory: both = 2 MB pages for torch's large "
                             "buffers and glibc keeping freed memory, faster at first, slowing along a long run; "
                             "nothing computed changes)")
    add_setting_options(parser)


def resolved_settings(args: argparse.Namespace) -> TrainSettings:
    """A fresh run: the recipe + options. A resumed run: its saved settings + options."""
    saved = Path(args.out) / "settings.json"
    if args.resume and saved.is_file():
        base = json.loads(saved.read_text())
        given = {k: v for k, v in asdict(settings_from_args(args)).items() if getattr(args, k, None) is not None}
        return recipe("cpu", **{**base, **given})
    return settings_from_args(args)


def after_training(args: argparse.Namespace) -> AfterTraining:
    """What is done with the trained model (export, evaluation): the options given, else, with
    ``--resume``, what the run's first invocation asked (``AFTER_FILE`` in the run folder). Records the
    answer there for the next resume, its paths absolute (a resume may start elsewhere)."""
    path = Path(args.out) / AFTER_FILE
    saved = json.loads(path.read_text()) if args.resume and path.is_file() else {}
    given = {name: getattr(args, name) for name in AFTER_OPTIONS if getattr(args, name) is not None}
    given.update({name: str(Path(given[name]).absolute()) for name in ("export", "compare_with") if name in given})
    after = AfterTraining(**{**{k: v for k, v in saved.items() if k in AFTER_OPTIONS}, **given})
    path.write_text(json.dumps(asdict(after), indent=2) + "\n")
    return after


def run(args: argparse.Namespace) -> int:
    taken = take_memory(args.memory)  # before torch is imported (a child process inherits the pages' setting)
    print(f"memory: {' + '.join(taken) or 'as the C library and torch come'}", flush=True)
    settings = resolved_settings(args)
    if args.stage1_from is not None:
        from .stage1 import stage1_head_file

        try:
            stage1_head_file(args.stage1_from)
        except FileNotFoundError as error:
            print(error)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.resume and (out / "settings.json").is_file():
        print(f"{out} holds a run already: pass --resume to continue it, or use another --out")
        return 2
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")
    after = after_training(args)
    is_child = CHILD_ENV in os.environ  # started by ``supervise``
    if settings.fresh_process_minutes > 0 and not is_child:
        return supervise(args, out, taken)
    if args.resume and after != AfterTraining():
        print(f"after training: {after}", flush=True)
    from .run import train

    stop: list[int] = []
    fresh = _FreshProcessClock(settings.fresh_process_minutes if is_child else 0.0)

    def request_stop(signum: int, frame: object) -> None:  # the step under way finishes, then a checkpoint
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)
        print(f"\nsignal {signum}: stopping after this step (again to stop at once)", flush=True)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = train(out, settings, resume=args.resume, progress=not args.no_progress,
                       stop_requested=lambda stage, step: bool(stop) or fresh.due(stage, step),
                       stage1_from=args.stage1_from)
    except FileExistsError as error:
        print(error)
        return 2
    except KeyboardInterrupt as stopped:
        if not stop and fresh.expired:
            return FRESH_PROCESS_EXIT
        print(f"{stopped or 'stopped'}: continue with `pixellm-ros train --out {out} --resume`")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if after.export:
        target = Path(after.export)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(result.model_dir, target)
        print(f"exported the model to {target}")
    if after.eval_scenes > 0:
        from pixellm_ros.evaluation.world_eval import evaluate_run

        summary = evaluate_run(result.model_dir, out / "eval", after.eval_scenes, base=after.compare_with,
                               progress=not args.no_progress, camera_images=after.eval_camera_scenes)
        print(summary["new"]["table"])
        print(f"paraphrased instructions (gIoU gap {summary['paraphrase_gap_giou']:+.3f}):")
        print(summary["paraphrased"]["table"])
        if "comparison_table" in summary:
            print(summary["comparison_table"])
        if "camera" in summary:
            print(f"at a camera's size, {after.eval_camera_scenes} other scenes:")
            print(summary["camera"]["table"])
            print(summary.get("camera_comparison_table", summary.get("camera_comparison_skipped", "")))
    return 0


class _FreshProcessClock:
    """When a child process's time is up (``fresh_process_minutes`` since it started; 0: never), and
    only once it has trained a step itself, so that every process moves the run on."""

    def __init__(self, minutes: float) -> None:
        self.seconds, self.began, self.first, self.expired = minutes * 60.0, time.monotonic(), None, False

    def due(self, stage: str, step: int) -> bool:
        if self.first is None:
            self.first = (stage, step)
        self.expired = 0 < self.seconds <= time.monotonic() - self.began and (stage, step) != self.first
        return self.expired


def supervise(args: argparse.Namespace, out: Path, taken: list[str]) -> int:
    """Train in child processes, each ``--resume``-ing the run from its checkpoint (the settings and
    what to do after training are in the run folder already) and ending itself after
    ``fresh_process_minutes`` (exit status ``FRESH_PROCESS_EXIT``), until one finishes or stops. A
    child runs in its own session: SIGINT / SIGTERM reach it once, through this process; then no new
    child is started. ``taken``: this process's memory settings; each child takes its own (the same
    ``--memory``). Returns the last child's exit status."""
    command = [sys.executable, "-m", "pixellm_ros.training", "--out", str(out.absolute()), "--resume", "--memory", args.memory]
    command += ["--no-progress"] if args.no_progress else []
    command += ["--stage1-from", str(Path(args.stage1_from).absolute())] if args.stage1_from is not None else []
    env = {key: value for key, value in os.environ.items() if not (key == PAGES_ENV and "pages" in taken)}
    stopping: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: object) -> None:
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for number in itertools.count(1):
            if number > 1:
                line = f"[{time.strftime('%H:%M:%S')}] process {number}: the run goes on from its checkpoint in a fresh process"
                print(line, flush=True)
                with (out / "log.txt").open("a", encoding="utf-8") as log_file:
                    log_file.write(line + "\n")
            child = subprocess.Popen(command, env={**env, CHILD_ENV: str(number)}, start_new_session=True)
            status = child.wait()
            if status != FRESH_PROCESS_EXIT:
                return status
            if stopping:
                print(f"stopped: continue with `pixellm-ros train --out {out} --resume`")
                return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixellm-ros train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
