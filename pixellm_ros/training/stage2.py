"""Stage 2: the LLM learns to read the object tokens, answer, and point at its targets.

What is trained: low-rank adapters on every Linear of the LLM's layers and the rows of the added
tokens (peft, injected in place: the model keeps its own attribute names), the token projector
(object -> LLM token), ``text_hidden_fcs`` and the seg fusion. Frozen: the encoder, stage 1's
detector and attribute head, the pixel decoder.

Losses: PixelLM's token cross-entropy on the answer, and a pull of each target's seg prompts
(``model.seg_prompts``, the decoder's L prompts) to the prompts stage 1's ``PromptHead`` gives that
object, normalised by their mean square (``prompt_distillation``). The decoder, frozen, then turns the
LLM's prompts into the masks stage 1 taught it. The image side of every scene is computed once
(``Stage2Scenes``): the detections and the teacher prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model

from pixellm_ros.engine.prompt import build_prompt_ids
from pixellm_ros.model.bpe_tokenizer import BPETokenizer
from pixellm_ros.model.codebook import seg_state_mask
from pixellm_ros.model.constants import seg_group_text
from pixellm_ros.model.losses import IGNORE_INDEX
from pixellm_ros.model.object_tokens import ObjectDetections, nearest_other
from pixellm_ros.model.outputs import ImageFeatures
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.world.phrasing import fill_seg
from pixellm_ros.world.questions import Question, make_questions

from .phrasing import augment_instruction
from .scenes import ScenePool
from .stage1 import PromptHead

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MATCH_RADIUS = 0.6  # a detection within this many radii of an object's centre is that object


@dataclass
class Stage2Scenes:
    """Each scene's image side, computed once by the frozen stage-1 parts (K slots, left to right).

    embeddings (N, K, E), attributes (N, K, A), places (N, K, 3), valid (N, K) bool,
    neighbours (N, K) long (``nearest_other``), teacher (N, K, L, D) the prompt head's prompts,
    object_slot: per scene {object id: slot}.
    """

    embeddings: torch.Tensor
    attributes: torch.Tensor
    places: torch.Tensor
    valid: torch.Tensor
    neighbours: torch.Tensor
    teacher: torch.Tensor
    object_slot: list[dict[int, int]]


@torch.no_grad()
def prepare_scenes(model: PixelLMForCausalLM, prompt_head: PromptHead, pool: ScenePool, batch: int = 32) -> Stage2Scenes:
    tokenizer = model.object_tokenizer
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("embeddings", "attributes", "places", "valid", "neighbours", "teacher")}
    slots: list[dict[int, int]] = []
    for start in range(0, len(pool), batch):
        indices = list(range(start, min(len(pool), start + batch)))
        valid_hw = [pool.valid_hw[i] for i in indices]
        _, _, _, det = tokenizer(pool.batch_maps(indices), valid_hw)
        parts["embeddings"].append(det.embeddings)
        parts["attributes"].append(det.attributes)
        parts["places"].append(tokenizer.places(det, valid_hw))
        parts["valid"].append(det.valid)
        parts["neighbours"].append(nearest_other(det.centres, det.valid))
        parts["teacher"].append(prompt_head(det.embeddings))
        for row, i in enumerate(indices):
            slots.append(match_objects(pool.objects[i], det, row))
    return Stage2Scenes(**{k: torch.cat(v) for k, v in parts.items()}, object_slot=slots)


def match_objects(objects: torch.Tensor, det: ObjectDetections, row: int) -> dict[int, int]:
    """{object id: detection slot} for the objects of one scene that a detection found (nearest
    unclaimed valid detection within MATCH_RADIUS radii of the centre)."""
    found: dict[int, int] = {}
    taken: set[int] = set()
    centres = det.centres[row]
    for object_id, (x, y, radius, *_rest) in enumerate(objects.tolist()):
        distance = ((centres - torch.tensor([x, y])) ** 2).sum(-1).sqrt()
        distance[~det.valid[row]] = float("inf")
        for slot in taken:
            distance[slot] = float("inf")
        slot = int(distance.argmin())
        if float(distance[slot]) < max(radius * MATCH_RADIUS, 8.0):
            found[object_id] = slot
            taken.add(slot)
    return found


def add_adapters(model: PixelLMForCausalLM, tokenizer: BPETokenizer, rank: int) -> None:
    """Inject rank-``rank`` adapters (alpha = 2 rank) into every Linear of the LLM's layers and make
    the added tokens' rows trainable; everything else of the LLM stays frozen."""
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS),
        trainable_token_indices=list(tokenizer.added_tokens.values()),
    )
    inject_adapter_in_model(config, model.language_model)
    for name, parameter in model.language_model.named_parameters():
        parameter.requires_grad_("lora_" in name or "trainable_tokens" in name)


def stage2_parameters(model: PixelLMForCausalLM) -> list[torch.nn.Parameter]:
    trainable = [p for p in model.language_model.parameters() if p.requires_grad]
    for module in (model.object_tokenizer.token_projector, model.text_hidden_fcs, model.seg_fusion):
        trainable += list(module.parameters())
    return trainable


@dataclass
class Example:
    scene: int
    question: Question
    instruction: str
    slots: list[int]  # the detection slot of each target, in the answer's order


def draw_examples(
    scenes: Stage2Scenes, pool: ScenePool, count: int, seed: int, step: int, phrasing_rate: float, none_rate: float,
    typo_rate: float = 0.0,
) -> list[Example]:
    """``count`` questions for step ``step`` (a function of seed and step): each about a random scene,
    of a random kind, re-worded with probability ``phrasing_rate`` (a re-worded one given a typo with
    probability ``typo_rate``); questions whose targets the detector missed are drawn again."""
    rng = np.random.default_rng([seed, 2, step])
    out: list[Example] = []
    while len(out) < count:
        index = int(rng.integers(len(pool)))
        questions = make_questions(pool.scenes[index], rng, 1, split="train", none_rate=none_rate)
        if not questions:
            continue
        question = questions[0]
        found = scenes.object_slot[index]
        if any(t not in found for t in question.target_ids):
            continue
        out.append(Example(index, question, augment_instruction(question.sentence, rng, phrasing_rate, typo_rate),
                           [found[t] for t in question.target_ids]))
    return out


@dataclass
class Stage2Losses:
    total: torch.Tensor
    token_ce: float
    distillation: float


def stage2_loss(
    model: PixelLMForCausalLM, tokenizer: BPETokenizer, scenes: Stage2Scenes, examples: list[Example],
    distillation_weight: float,
) -> Stage2Losses:
    cfg = model.config
    seg_text = seg_group_text(cfg.seg_tokens_per_target)
    rows, labels = [], []
    for example in examples:
        prompt = build_prompt_ids(tokenizer, example.instruction, cfg.use_im_start_end, cfg.prompt_template)
        answer = tokenizer.encode(fill_seg(example.question.answer, seg_text)) + [tokenizer.eos_id]
        rows.append(prompt + answer)
        labels.append([IGNORE_INDEX] * len(prompt) + answer)
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_id)
    label_ids = torch.full((len(rows), length), IGNORE_INDEX)
    attention = torch.zeros(len(rows), length, dtype=torch.long)
    for b, (ids, lab) in enumerate(zip(rows, labels)):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        label_ids[b, : len(lab)] = torch.tensor(lab)
        attention[b, : len(ids)] = 1

    index = torch.tensor([e.scene for e in examples])
    tokens = model.object_tokenizer.token_projector(
        scenes.embeddings[index], scenes.attributes[index], scenes.places[index]
    )
    embeds, mask = model.object_sequence(tokens, scenes.attributes[index], scenes.places[index], scenes.valid[index],
                                         scenes.neighbours[index])
    feats = ImageFeatures(llm_tokens=embeds, llm_mask=mask, decoder_features=[])
    spliced = model.splice_image(input_ids, feats, labels=label_ids, attention_mask=attention)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spliced.embeds.device.type == "cpu"):
        hidden = model.language_model.model(inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask).last_hidden_state
        assert spliced.labels is not None
        targets = spliced.labels[:, 1:]
        answer = targets != IGNORE_INDEX
        logits = model.language_model.lm_head(hidden[:, :-1][answer])
    token_ce = F.cross_entropy(logits.float(), targets[answer])

    before_seg = seg_state_mask(spliced.token_ids, tokenizer.seg_token_ids) & spliced.attention_mask.bool()
    distillation = hidden.new_zeros(()).float()
    if bool(before_seg.any()):
        prompts = model.seg_prompts(hidden[before_seg].float())  # (T, L, D), examples in order, targets in answer order
        teacher = torch.cat([scenes.teacher[e.scene, e.slots] for e in examples if e.slots])
        distillation = F.mse_loss(prompts, teacher) / teacher.pow(2).mean().clamp(min=1e-6)
    total = token_ce + distillation_weight * distillation
    return Stage2Losses(total, float(token_ce.detach()), float(distillation.detach()))
