"""A procedural tabletop world for training and demoing a small PixelLM.

In memory::

    rng = np.random.default_rng(0)
    scene = sample_scene(rng, (224, 224))          # or (480, 640), split="heldout"
    rgb, masks = scene.render()                     # (H, W, 3) uint8, (K, H, W) bool visible masks
    for q in make_questions(scene, rng):            # q.question, q.answer ("... {seg}."), q.target_ids
        target_masks = masks[list(q.target_ids)]
    geo = scene.geometry                            # the same scene in 3D (``geometry``):
    geo.camera.K, geo.depth_image("16UC1")          # intrinsics, aligned depth (uint16 mm / float32 m)
    geo.object_points(i), geo.object_centroid(i)    # exact optical-frame points of object i's visible pixels

On disk (MUSE format): ``generate_dataset(out_dir, num_images, seed, split, image_size)``.
The vocabulary, affordances and held-out pairs are in ``ontology``; the spatial definitions in
``relations``; the question kinds in ``questions``.
"""

from pixellm_ros.muse.instruction import format_instruction
from pixellm_ros.muse.schema import SEG_PLACEHOLDER
from pixellm_ros.world.muse_export import generate_dataset, scene_rng
from pixellm_ros.world.objects import SceneObject
from pixellm_ros.world.ontology import HELDOUT_COLOUR_SHAPE
from pixellm_ros.world.phrasing import NO_TARGET_ANSWER, fill_seg
from pixellm_ros.world.questions import Question, make_questions
from pixellm_ros.world.scene import Scene, sample_scene

__all__ = [
    "HELDOUT_COLOUR_SHAPE",
    "NO_TARGET_ANSWER",
    "SEG_PLACEHOLDER",
    "Question",
    "Scene",
    "SceneObject",
    "fill_seg",
    "format_instruction",
    "generate_dataset",
    "make_questions",
    "sample_scene",
    "scene_rng",
]
