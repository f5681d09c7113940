"""Direct supervision of what the vision tower sees: linear colour and shape heads on its features.

A training aid and a probe, not part of the shipped model. Two kinds of labels, both from the
world's exact instance masks:

* per object: the tower's last-layer patch features averaged over the object's patches, weighted
  by how much of each patch the object covers -> its colour and its shape;
* per patch: the object covering most of the patch (or the table, an extra class) -> that
  object's colour and shape.

``benchmarks/vision_shape_probe.py`` trains a tower with nothing but these losses to measure how
fast a tower learns shape; stage 1 (``decoder_pretraining``) can add them to its mask losses
(``DecoderPretrainSettings.attribute_weight``) so that the tower is taught shape directly rather
than only through the masks of objects that share a colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixellm_ros.model.vision import patch_padding_mask
from pixellm_ros.world.ontology import COLOUR_NAMES, SHAPE_NAMES

COLOUR_INDEX = {name: i for i, name in enumerate(COLOUR_NAMES)}
SHAPE_INDEX = {name: i for i, name in enumerate(SHAPE_NAMES)}


@dataclass
class ObjectLabels:
    """One image's objects: coverage (K, G*G) float, the share of each patch each object covers
    (summed over objects <= 1 per patch; the rest is table); colours / shapes (K,) long class
    indices; valid (G*G,) bool, the patches that hold image pixels (not only padding)."""

    coverage: torch.Tensor
    colours: torch.Tensor
    shapes: torch.Tensor
    valid: torch.Tensor

    def to(self, device: torch.device | str) -> ObjectLabels:
        return ObjectLabels(*(t.to(device, non_blocking=True) for t in (self.coverage, self.colours, self.shapes, self.valid)))


def object_labels(
    masks: torch.Tensor, colours: Sequence[str], shapes: Sequence[str], valid_hw: tuple[int, int], image_size: int,
    patch_size: int,
) -> ObjectLabels:
    """masks (K, H, W) {0, 1} at the rendered size -> ObjectLabels on the tower's G x G grid.

    The masks are brought to the model's input frame as the image is (resized to ``valid_hw``,
    top-left in the S x S canvas, S = ``image_size``), then averaged over each patch.
    """
    grid = image_size // patch_size
    count = int(masks.shape[0])
    canvas = torch.zeros(count, 1, image_size, image_size)
    if count:
        resized = F.interpolate(masks[:, None].float(), size=tuple(valid_hw), mode="area")
        canvas[:, :, : valid_hw[0], : valid_hw[1]] = resized
    coverage = F.avg_pool2d(canvas, patch_size)[:, 0].reshape(count, grid * grid)
    return ObjectLabels(
        coverage=coverage,
        colours=torch.tensor([COLOUR_INDEX[c] for c in colours], dtype=torch.long),
        shapes=torch.tensor([SHAPE_INDEX[s] for s in shapes], dtype=torch.long),
        valid=patch_padding_mask([tuple(valid_hw)], image_size, grid)[0].flatten(),
    )


class AttributeHeads(nn.Module):
    """Linear heads on C-wide patch features: per object (colour, shape) and per patch (+ table)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.object_colour = nn.Linear(width, len(COLOUR_NAMES))
        self.object_shape = nn.Linear(width, len(SHAPE_NAMES))
        self.patch_colour = nn.Linear(width, len(COLOUR_NAMES) + 1)  # last class: the table
        self.patch_shape = nn.Linear(width, len(SHAPE_NAMES) + 1)

    def forward(self, features: torch.Tensor, labels: Sequence[ObjectLabels]) -> tuple[torch.Tensor, dict[str, float]]:
        """features (B, G*G, C) of B images and their labels -> (the mean of the four
        cross-entropies, {"object_shape_accuracy", "object_colour_accuracy", "patch_shape_accuracy",
        "objects"}). Patches that hold only padding are left out."""
        features = features.float()
        object_feats, object_colour, object_shape = [], [], []
        patch_feats, patch_colour, patch_shape = [], [], []
        for image, image_labels in enumerate(labels):
            feats = features[image]  # (G*G, C)
            cover = image_labels.coverage.to(feats.device)
            weight = cover.sum(1)
            seen = weight > 0
            if bool(seen.any()):
                pooled = (cover[seen] @ feats) / weight[seen, None]
                object_feats.append(pooled)
                object_colour.append(image_labels.colours.to(feats.device)[seen])
                object_shape.append(image_labels.shapes.to(feats.device)[seen])
            table = (1.0 - cover.sum(0)).clamp_min(0.0)  # (G*G,)
            best, owner = torch.cat([cover, table[None]]).max(0)
            keep = (best > 0) & image_labels.valid.to(feats.device)
            is_table = owner == cover.shape[0]
            colours = torch.cat([image_labels.colours.to(feats.device), feats.new_full((1,), len(COLOUR_NAMES)).long()])
            shapes = torch.cat([image_labels.shapes.to(feats.device), feats.new_full((1,), len(SHAPE_NAMES)).long()])
            patch_feats.append(feats[keep])
            patch_colour.append(torch.where(is_table, len(COLOUR_NAMES), colours[owner])[keep])
            patch_shape.append(torch.where(is_table, len(SHAPE_NAMES), shapes[owner])[keep])
        patches = torch.cat(patch_feats)
        terms = [
            F.cross_entropy(self.patch_colour(patches), torch.cat(patch_colour)),
            F.cross_entropy(self.patch_shape(patches), torch.cat(patch_shape)),
        ]
        metrics: dict[str, float] = {"objects": 0.0}
        with torch.no_grad():
            metrics["patch_shape_accuracy"] = float(
                (self.patch_shape(patches).argmax(-1) == torch.cat(patch_shape)).float().mean()
            )
        if object_feats:
            objects = torch.cat(object_feats)
            colour_logits, shape_logits = self.object_colour(objects), self.object_shape(objects)
            colour_target, shape_target = torch.cat(object_colour), torch.cat(object_shape)
            terms += [F.cross_entropy(colour_logits, colour_target), F.cross_entropy(shape_logits, shape_target)]
            with torch.no_grad():
                metrics["objects"] = float(objects.shape[0])
                metrics["object_shape_accuracy"] = float((shape_logits.argmax(-1) == shape_target).float().mean())
                metrics["object_colour_accuracy"] = float((colour_logits.argmax(-1) == colour_target).float().mean())
        return torch.stack(terms).mean(), metrics
