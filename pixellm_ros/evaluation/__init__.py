"""MUSE-style evaluation of any segmenter: Hungarian-matched gIoU, cIoU and count accuracy.

    images = load_muse("val.json", "images/")
    report = evaluate(images, predictor)          # predictor(image_rgb, instruction) -> [mask, ...]
    print(report.table()); report.write_json("report.json")

The exact matching cost and IoU conventions are documented in ``matching``; the aggregate
metrics in ``metrics``.
"""

from pixellm_ros.evaluation.evaluator import EvaluationReport, Predictor, evaluate
from pixellm_ros.evaluation.matching import QuestionScore, matching_cost, score_question
from pixellm_ros.evaluation.muse_data import MuseImage, load_muse
from pixellm_ros.muse.mask_codec import decode_segmentation, encode_rle

__all__ = [
    "EvaluationReport",
    "MuseImage",
    "Predictor",
    "QuestionScore",
    "decode_segmentation",
    "encode_rle",
    "evaluate",
    "load_muse",
    "matching_cost",
    "score_question",
]
