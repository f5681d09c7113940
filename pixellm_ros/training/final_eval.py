"""The real metrics of a trained model: the engine answers world questions, the evaluator scores them.

The questions come from a MUSE-format export of the world (``world.generate_dataset``) with its
own seed, so none of its scenes is a training scene; the held-out split puts an unseen colour x
shape pair in every question. Scoring is ``evaluation.evaluate`` (gIoU, cIoU, count accuracy)
with ``PixelLMEngine`` as the predictor: generation, seg groups and masks exactly as deployed.
"""

from __future__ import annotations

import os
from pathlib import Path

from pixellm_ros.evaluation.evaluator import EvaluationReport, evaluate
from pixellm_ros.evaluation.muse_data import load_muse
from pixellm_ros.world import generate_dataset

EVAL_DATA_SEED = 20_240_601


def world_eval_data(
    folder: str | os.PathLike[str], split: str, num_images: int, seed: int = EVAL_DATA_SEED, image_size: int = 224
) -> Path:
    """Export ``num_images`` scenes of ``split`` to ``folder/split`` once (reused when present); returns the JSON."""
    out = Path(folder) / split
    json_path = out / f"{split}.json"
    if not json_path.is_file():
        json_path = generate_dataset(out, num_images, seed=seed, split=split, image_size=image_size, progress=False)  # type: ignore[arg-type]
    return json_path


def evaluate_model_folder(
    model_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    split: str = "heldout",
    num_images: int = 60,
    limit: int | None = None,
    device: str = "cpu",
    seed: int = EVAL_DATA_SEED,
    progress: bool = True,
) -> EvaluationReport:
    """Load ``model_dir`` in the engine and score it on world questions of ``split``."""
    from pixellm_ros.engine import PixelLMEngine  # the engine pulls in generation; import on use

    json_path = world_eval_data(data_dir, split, num_images, seed)
    images = load_muse(json_path, json_path.parent / "images")
    engine = PixelLMEngine.from_pretrained(str(model_dir), device=device)
    try:

        def predict(image_rgb, instruction):  # type: ignore[no-untyped-def]
            return [target.mask for target in engine.segment(image_rgb, instruction).targets]

        return evaluate(images, predict, limit=limit, progress=progress)
    finally:
        engine.release()
