"""Writing tabletop scenes as a MUSE-format dataset: PNG images plus one JSON list.

Each image dict holds the MUSE keys (``file_name``, ``height``, ``width``, ``ann_list``,
``questions``, ``answers``, ``text_answers``) and two of ours that MUSE readers ignore:
``question_kinds`` (see ``questions``) and ``scene`` (split, seed, index).

Instances: ``category_id`` = 1 + index in ``ontology.SHAPE_NAMES``, ``category_name`` = the
shape, ``rephrased_name`` = "size colour shape", ``bbox`` = COCO [x, y, w, h] of the visible
mask, ``segmentation`` = uncompressed COCO RLE of the visible mask (exact), ``attributes`` =
colour, size, affordances, centre and radius. ``questions`` hold the bare sentences, as in MUSE;
the instruction a model sees is ``muse.format_instruction(sentence)``. The keys are
``muse.schema``'s.

Scene i of a dataset is drawn from ``scene_rng(seed, split, i)``, so any single scene can be
regenerated without the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pixellm_ros.muse.mask_codec import encode_rle, mask_bbox
from pixellm_ros.muse.schema import MuseImageEntry, MuseInstance
from pixellm_ros.world.objects import SceneObject
from pixellm_ros.world.ontology import AFFORDANCES, SHAPE_NAMES, SPLITS, Split
from pixellm_ros.world.questions import Question, make_questions
from pixellm_ros.world.scene import Scene, sample_scene


def scene_rng(seed: int, split: Split, index: int) -> np.random.Generator:
    """The generator scene ``index`` of a ``split`` dataset with ``seed`` is drawn from."""
    return np.random.default_rng([int(seed), SPLITS.index(split), int(index)])


def normalise_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int (square) or a (height, width) pair."""
    if isinstance(image_size, int):
        return (image_size, image_size)
    height, width = image_size
    return (int(height), int(width))


def instance_record(obj: SceneObject, mask: np.ndarray) -> MuseInstance:
    """The MUSE ``ann_list`` entry of one object, from its visible mask (H, W) bool."""
    return {
        "id": obj.id,
        "category_id": SHAPE_NAMES.index(obj.shape) + 1,
        "category_name": obj.shape,
        "rephrased_name": obj.full_name,
        "bbox": mask_bbox(mask),
        "area": int(mask.sum()),
        "iscrowd": 0,
        "segmentation": encode_rle(mask),
        "attributes": {
            "colour": obj.colour,
            "size": obj.size,
            "affordances": [a for a in AFFORDANCES if obj.can(a)],
            "center": [round(obj.center[0], 2), round(obj.center[1], 2)],
            "radius": round(obj.radius, 2),
        },
    }


def scene_record(scene: Scene, masks: np.ndarray, questions: list[Question], file_name: str) -> MuseImageEntry:
    """The MUSE image dict of a rendered scene; ``masks`` (K, H, W) from ``scene.render()``."""
    anns = [instance_record(obj, masks[obj.id]) for obj in scene.objects]
    return {
        "file_name": file_name,
        "height": scene.height,
        "width": scene.width,
        "ann_list": anns,
        "questions": [q.sentence for q in questions],
        "answers": [[anns[i] for i in q.target_ids] for q in questions],
        "text_answers": [q.answer for q in questions],
        "question_kinds": [q.kind for q in questions],
    }


def generate_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int = 0,
    split: Split = "train",
    image_size: int | tuple[int, int] = 224,
    questions_per_image: int = 5,
    progress: bool = True,
) -> Path:
    """Render ``num_images`` scenes into ``out_dir/images/`` and write ``out_dir/{split}.json``.

    Args:
        out_dir: output folder (created).
        num_images: number of scenes.
        seed: dataset seed; the same seed, split and size give the same files.
        split: "train" or "heldout" (``ontology`` lists the held-out colour x shape pairs).
        image_size: an int for square images or (height, width).
        questions_per_image: at most this many questions per scene.
        progress: show a tqdm bar.

    Returns:
        Path of the JSON file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    size = normalise_size(image_size)
    out = Path(out_dir)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for index in tqdm(range(num_images), desc=f"world {split}", unit="img", disable=not progress):
        rng = scene_rng(seed, split, index)
        scene = sample_scene(rng, size, split=split)
        questions = make_questions(scene, rng, max_questions=questions_per_image, split=split)
        rgb, masks = scene.render()
        file_name = f"{split}_{index:06d}.png"
        if not cv2.imwrite(str(image_dir / file_name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {image_dir / file_name}")
        record = scene_record(scene, masks, questions, file_name)
        record["scene"] = {"split": split, "seed": int(seed), "index": index}
        records.append(record)
    json_path = out / f"{split}.json"
    json_path.write_text(json.dumps(records))
    return json_path
