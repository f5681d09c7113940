"""PixelLM's training losses.

total = w_ce * token CE + w_bce * BCE + w_dice * Dice + w_ref * target refinement

* Token CE: next-token cross-entropy over the answer (labels = -100 elsewhere, image tokens too).
* BCE and Dice: per mask, at label resolution (the predicted logits are brought back to the
  image's own size first), averaged over all masks of the batch. Dice uses the released form
  with a 1/1000 scale on both terms and eps 1e-6, which keeps the sums small for large masks.
* Target refinement (the paper's idea; the released version was buggy and left disabled): with
  several targets in one answer, the hard pixels are the ones two or more predicted masks claim at
  once. Those pixels get an extra BCE term, so the model is pushed to decide which target owns them
  instead of letting masks bleed into each other. The overlap region is taken from the current
  predictions (logit > 0) within one question and carries no gradient itself; the term is the BCE
  on overlap pixels only, per mask averaged over all its pixels, then over masks. With the default
  weight 2.0 (= the BCE weight) the BCE on overlapping pixels counts double, the paper's
  up-weighting; weight 0 turns it off. One-target questions contribute nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass(frozen=True)
class LossWeights:
    ce: float = 1.0
    bce: float = 2.0
    dice: float = 0.5
    refinement: float = 2.0
    dice_scale: float = 1000.0
    dice_eps: float = 1e-6


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), labels (B, T) with IGNORE_INDEX -> mean CE of predicting labels[:, 1:]."""
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shifted_labels = labels[:, 1:].reshape(-1)
    if not bool((shifted_labels != IGNORE_INDEX).any()):
        return shifted_logits.sum() * 0.0
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX)


def per_mask_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(T, H, W) logits and {0,1} targets -> (T,) mean BCE over pixels."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).mean(1)


def per_mask_dice(logits: torch.Tensor, targets: torch.Tensor, scale: float = 1000.0, eps: float = 1e-6) -> torch.Tensor:
    """(T, H, W) logits and {0,1} targets -> (T,) Dice loss, the released scaled form."""
    probs = logits.sigmoid().flatten(1) / scale
    scaled_targets = targets.flatten(1) / scale
    numerator = 2 * (probs * targets.flatten(1)).sum(-1)
    denominator = probs.sum(-1) + scaled_targets.sum(-1)
    return 1 - (numerator + eps) / (denominator + eps)


def per_mask_refinement(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The masks of ONE question: (T, H, W) logits/targets -> (T,) BCE on pixels claimed by >= 2 masks."""
    overlap = ((logits.detach() > 0).sum(dim=0) >= 2).to(logits.dtype)  # (H, W)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (bce * overlap).flatten(1).mean(1)


def per_mask_refinement_grouped(logits: torch.Tensor, targets: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
    """``per_mask_refinement`` for the masks of many questions at once: (M, H, W) logits/targets,
    question (M,) long (0..Q-1, the question of each mask) -> (M,), overlaps counted within each
    question only."""
    claimed = (logits.detach() > 0).to(logits.dtype)
    count = int(question.max()) + 1 if question.numel() else 0
    per_question = claimed.new_zeros((count, *claimed.shape[1:])).index_add_(0, question, claimed)
    overlap = (per_question >= 2).to(logits.dtype)[question]
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (bce * overlap).flatten(1).mean(1)


def mask_losses(
    predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], weights: LossWeights
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """One (T_b, H_b, W_b) logits/targets pair per question -> weighted (bce, dice, refinement), #masks.

    Each loss is averaged over all masks of all questions. The masks of all questions of one size
    are scored together (a few large operations rather than a few per question: what a GPU
    wants); the refinement still counts overlaps within each question only.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} target sets")
    by_size: dict[tuple[int, ...], list[int]] = {}
    for index, (logits, target) in enumerate(zip(predictions, targets)):
        if logits.shape != target.shape:
            raise ValueError(f"prediction {tuple(logits.shape)} and target {tuple(target.shape)} differ")
        if logits.shape[0] == 0:
            continue
        by_size.setdefault(tuple(logits.shape[1:]), []).append(index)
    if not by_size:
        device = predictions[0].device if predictions else None
        zero = torch.zeros((), device=device)
        if predictions:  # keep the graph connected so backward() works on a mask-free batch
            zero = zero + sum(p.float().sum() for p in predictions) * 0.0
        return zero, zero, zero, 0
    bce_terms: list[torch.Tensor] = []
    dice_terms: list[torch.Tensor] = []
    refine_terms: list[torch.Tensor] = []
    for questions in by_size.values():
        logits = torch.cat([predictions[i] for i in questions]).float()
        target = torch.cat([targets[i] for i in questions]).to(logits.dtype)
        counts = torch.tensor([predictions[i].shape[0] for i in questions], device=logits.device)
        question = torch.repeat_interleave(torch.arange(len(questions), device=logits.device), counts)
        bce_terms.append(per_mask_bce(logits, target))
        dice_terms.append(per_mask_dice(logits, target, weights.dice_scale, weights.dice_eps))
        refine_terms.append(per_mask_refinement_grouped(logits, target, question))
    bce = torch.cat(bce_terms)
    num_masks = int(bce.numel())
    return (
        weights.bce * bce.mean(),
        weights.dice * torch.cat(dice_terms).mean(),
        weights.refinement * torch.cat(refine_terms).mean(),
        num_masks,
    )
