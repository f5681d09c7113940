"""The real metrics of a trained model: the engine answers world questions, the evaluator scores them.

The questions come from a MUSE-format export of the world (``world.generate_dataset``) with its
own seed, so none of its scenes is a training scene; the held-out split puts an unseen colour x
shape pair in every question. Scoring is ``evaluation.evaluate`` (gIoU, cIoU, count accuracy)
with ``PixelLMEngine`` as the predictor: generation, seg groups and masks exactly as deployed.

With ``workers`` the scenes are split over that many processes (spawned, one CPU thread each),
whose per-question records are joined in scene order into one report: the same report as one
process makes, in a fraction of the time on a many-core machine.

``evaluate_run`` is what a recipe's run does after training (``TrainSettings.final_eval_*``):
the exported model and the model it is compared with on the same held-out scenes, the paired
bootstrap between them, and the figures against the embedded model's aims, in one folder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pixellm_ros.evaluation.comparison import paired_bootstrap
from pixellm_ros.evaluation.evaluator import EvaluationReport, QuestionRecord, evaluate
from pixellm_ros.evaluation.muse_data import load_muse
from pixellm_ros.world import generate_dataset

from .loading import resolve_workers

EVAL_DATA_SEED = 20_240_601

# What the embedded model is asked to reach (issue 17), on the held-out scenes through the engine:
# metric -> (where it is read from the report, the least value that meets it).
AIMS: dict[str, tuple[tuple[str, ...], float]] = {
    "giou": (("overall", "giou"), 0.75),
    "ciou": (("overall", "ciou"), 0.75),
    "count_accuracy": (("overall", "count_accuracy"), 0.85),
    "count_accuracy_2plus_targets": (("per_target_count", "2+", "count_accuracy"), 0.70),
    "none_accuracy": (("overall", "none_accuracy"), 0.90),
}


def world_eval_data(
    folder: str | os.PathLike[str], split: str, num_images: int, seed: int = EVAL_DATA_SEED, image_size: int = 224
) -> Path:
    """Export ``num_images`` scenes of ``split`` to ``folder/split`` once (reused when present); returns the JSON."""
    out = Path(folder) / split
    json_path = out / f"{split}.json"
    if not json_path.is_file():
        json_path = generate_dataset(out, num_images, seed=seed, split=split, image_size=image_size, progress=False)  # type: ignore[arg-type]
    return json_path


def _engine_records(
    model_dir: str, json_path: str, indices: list[int] | None, device: str, limit: int | None, progress: bool,
    threads: int | None,
) -> tuple[list[QuestionRecord], int]:
    """Score the scenes ``indices`` of ``json_path`` (None: all) with the engine -> records, images seen."""
    import torch

    from pixellm_ros.engine import PixelLMEngine  # the engine pulls in generation; import on use

    if threads is not None:
        torch.set_num_threads(threads)
    images = load_muse(json_path, Path(json_path).parent / "images")
    if indices is not None:
        images = [images[i] for i in indices]
    engine = PixelLMEngine.from_pretrained(model_dir, device=device)
    try:

        def predict(image_rgb, instruction):  # type: ignore[no-untyped-def]
            return [target.mask for target in engine.segment(image_rgb, instruction).targets]

        report = evaluate(images, predict, limit=limit, progress=progress)
        return report.records, report.num_images
    finally:
        engine.release()


def _shard_records(model_dir: str, json_path: str, indices: list[int]) -> tuple[list[QuestionRecord], int]:
    return _engine_records(model_dir, json_path, indices, "cpu", None, False, threads=1)


def evaluate_model_folder(
    model_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    split: str = "heldout",
    num_images: int = 60,
    limit: int | None = None,
    device: str = "cpu",
    seed: int = EVAL_DATA_SEED,
    progress: bool = True,
    workers: int = 0,
) -> EvaluationReport:
    """Load ``model_dir`` in the engine and score it on world questions of ``split``.

    workers: 0 = this process; n > 1 = n spawned CPU processes (-1: every core but two), each
    scoring every n-th scene with one thread (CPU only, no ``limit``).
    """
    json_path = world_eval_data(data_dir, split, num_images, seed)
    count = resolve_workers(workers) if workers else 0
    count = min(count, num_images)
    if count <= 1 or device != "cpu" or limit is not None:
        records, seen = _engine_records(str(model_dir), str(json_path), None, device, limit, progress, threads=None)
        return EvaluationReport.from_records(records, seen)
    entries = len(load_muse(json_path, json_path.parent / "images"))
    shards = [list(range(start, entries, count)) for start in range(count)]
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_shard_records, [str(model_dir)] * count, [str(json_path)] * count, shards))
    order = {name: i for i, name in enumerate(_image_names(json_path))}
    records = sorted((r for shard, _ in results for r in shard), key=lambda r: order[r.image])  # stable: question order kept
    return EvaluationReport.from_records(records, sum(seen for _, seen in results))


def _image_names(json_path: Path) -> list[str]:
    return [image.candidates[0].name for image in load_muse(json_path, json_path.parent / "images")]


def read_aims(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each aim of ``AIMS``: the report's value, the aim, and whether it is met."""
    out: dict[str, dict[str, Any]] = {}
    for name, (path, least) in AIMS.items():
        value: Any = report
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out[name] = {"value": value, "aim": least, "met": value is not None and value >= least}
    return out


def evaluate_run(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    num_images: int,
    seed: int = 1,
    compare_with: str = "",
    workers: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """The model in ``model_dir`` (and ``compare_with``: "shipped" or a model folder) on
    ``num_images`` held-out scenes of the world exported with ``seed``, written to ``out_dir``:
    ``eval_new.json``, ``eval_base.json``, ``comparison.json`` (paired bootstrap, base -> new) and
    ``eval_summary.json`` (figures, per kind, per target count, the aims, timings), which is returned."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    began = time.monotonic()
    new = evaluate_model_folder(model_dir, data, "heldout", num_images, device=device, seed=seed, progress=False,
                                workers=workers)
    new.write_json(out / "eval_new.json")
    summary: dict[str, Any] = {
        "scenes": num_images, "seed": seed, "questions": new.overall["num_questions"],
        "new": {"model": str(model_dir), **_figures(new)}, "aims": read_aims(new.to_dict()),
        "new_seconds": time.monotonic() - began,
    }
    if compare_with:
        base_dir = _model_folder(compare_with)
        began = time.monotonic()
        base = evaluate_model_folder(base_dir, data, "heldout", num_images, device=device, seed=seed, progress=False,
                                     workers=workers)
        base.write_json(out / "eval_base.json")
        comparison = paired_bootstrap([asdict(r) for r in base.records], [asdict(r) for r in new.records])
        comparison.write_json(out / "comparison.json")
        summary["base"] = {"model": str(base_dir), **_figures(base)}
        summary["base_seconds"] = time.monotonic() - began
        summary["comparison"] = comparison.to_dict()
        summary["comparison_table"] = comparison.table()
    (out / "eval_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _figures(report: EvaluationReport) -> dict[str, Any]:
    return {"overall": report.overall, "per_kind": report.per_kind, "per_target_count": report.per_target_count,
            "table": report.table()}


def _model_folder(name: str) -> Path:
    if name == "shipped":
        from pixellm_ros.engine.engine import DEFAULT_MODEL_DIR

        return Path(DEFAULT_MODEL_DIR)
    return Path(name)
