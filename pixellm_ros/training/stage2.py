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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model

from pixellm_ros.engine.prompt import build_prompt_ids
from pixellm_ros.model.bpe_tokenizer import BPETokenizer
from pixellm_ros.model.codebook import seg_state_mask
from pixellm_ros.model.config import PixelLMConfig
from pixellm_ros.model.constants import IMAGE_TOKEN_INDEX, seg_group_text
from pixellm_ros.model.losses import IGNORE_INDEX
from pixellm_ros.model.object_tokens import ObjectDetections
from pixellm_ros.model.outputs import ImageFeatures
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.world.phrasing import fill_seg
from pixellm_ros.world.questions import Question, everything_question, make_questions

from .phrasing import augment_instruction
from .scenes import ScenePool
from .stage1 import PromptHead

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MATCH_RADIUS = 0.6  # a detection within this many radii of an object's centre is that object
AUTOCAST_DTYPE = torch.bfloat16  # the LLM's forward in stage 2 (CPU autocast)


@dataclass
class Stage2Scenes:
    """Each scene's image side, computed once by the frozen stage-1 parts (K slots, left to right).

    embeddings (N, K, E), attributes (N, K, A), places (N, K, 3), valid (N, K) bool, neighbours (N, K)
    long when the slots carry the neighbour's words (``ObjectReading``), else None, teacher (N, K, L, D)
    the prompt head's prompts, object_slot: per scene {object id: slot}.
    """

    embeddings: torch.Tensor
    attributes: torch.Tensor
    places: torch.Tensor
    valid: torch.Tensor
    neighbours: torch.Tensor | None
    teacher: torch.Tensor
    object_slot: list[dict[int, int]]


@torch.no_grad()
def prepare_scenes(model: PixelLMForCausalLM, prompt_head: PromptHead, pool: ScenePool, batch: int = 32) -> Stage2Scenes:
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("embeddings", "attributes", "places", "valid", "neighbours",
                                                             "teacher")}
    slots: list[dict[int, int]] = []
    for start in range(0, len(pool), batch):
        indices = list(range(start, min(len(pool), start + batch)))
        read = model.detect_objects(pool.batch_maps(indices), [pool.valid_hw[i] for i in indices])
        det = read.detections
        parts["embeddings"].append(det.embeddings)
        parts["attributes"].append(det.attributes)
        parts["places"].append(read.places)
        parts["valid"].append(read.valid)
        if read.neighbours is not None:
            parts["neighbours"].append(read.neighbours)
        parts["teacher"].append(prompt_head(det.embeddings))
        for row, i in enumerate(indices):
            slots.append(match_objects(pool.objects[i], det, row))
    return Stage2Scenes(**{k: torch.cat(v) if v else None for k, v in parts.items()}, object_slot=slots)


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


@contextmanager
def frozen_weights_in(model: PixelLMForCausalLM, dtype: torch.dtype = AUTOCAST_DTYPE) -> Iterator[int]:
    """Within: the frozen Linear weights of the LLM's layers (the adapters' base layers) held in
    ``dtype``, the autocast type of ``stage2_loss``; on leaving, their float32 originals back.

    Autocast casts a frozen float32 weight on every forward (it caches only the casts of weights that
    are trained): 106 M parameters a step, cast and allocated anew, for the same values. Held in the
    autocast type, the forward reads them as they are and computes exactly what the cast would have
    given (the same rounding), losses and gradients bit for bit. Yields how many weights it holds."""
    if dtype == torch.float32:
        yield 0
        return
    originals: dict[torch.nn.Linear, torch.nn.Parameter] = {}
    for module in model.language_model.model.layers.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad and module.weight.dtype != dtype:
            originals[module] = module.weight
            module.weight = torch.nn.Parameter(module.weight.detach().to(dtype), requires_grad=False)
    try:
        yield len(originals)
    finally:
        for module, weight in originals.items():
            module.weight = weight


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
    typo_rate: float = 0.0, per_scene: int = 1, list_rate: float = 0.0, rewrite_rate: float = 0.0,
    kind_weights: dict[str, float] | None = None,
) -> list[list[Example]]:
    """``count`` questions for step ``step`` (a function of seed and step), in groups of up to
    ``per_scene`` distinct questions about one random scene (one sequence of the batch each); a
    question is of a random kind (by ``kind_weights``, default the world's), re-worded with probability
    ``phrasing_rate`` (a re-worded one in another sentence form with probability ``rewrite_rate``, given a
    typo with probability ``typo_rate``); with probability ``list_rate`` a scene's first question asks
    for every object it holds (``everything_question``; 0: the draws of a run without it); questions
    whose targets the detector missed are dropped, a scene left with none is drawn again."""
    rng = np.random.default_rng([seed, 2, step])
    groups: list[list[Example]] = []
    drawn = 0
    while drawn < count:
        index = int(rng.integers(len(pool)))
        found = scenes.object_slot[index]
        wanted = min(per_scene, count - drawn)
        questions = []
        if list_rate > 0.0 and rng.random() < list_rate:
            questions.append(everything_question(pool.scenes[index], rng))
        if wanted > len(questions):
            questions += make_questions(pool.scenes[index], rng, wanted - len(questions), split="train",
                                        none_rate=none_rate, weights=kind_weights)
        group = []
        for question in questions:
            if any(t not in found for t in question.target_ids):
                continue
            instruction = augment_instruction(question.sentence, rng, phrasing_rate, typo_rate, rewrite_rate)
            group.append(Example(index, question, instruction, [found[t] for t in question.target_ids]))
        if group:
            groups.append(group)
            drawn += len(group)
    return groups


@dataclass
class Stage2Losses:
    total: torch.Tensor
    token_ce: float
    distillation: float


@dataclass
class PackedRows:
    """One sequence per scene: the tokens its questions' prompts share, then each question's own
    prompt tokens and answer (a branch). ``branch`` (B, T): 0 for the shared tokens, i for the i-th
    question's, -1 for padding. The image placeholder is always among the shared tokens."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    branch: torch.Tensor

    @property
    def attention(self) -> torch.Tensor:
        """(B, T) long, 1 where not padding."""
        return (self.branch >= 0).long()


def pack_rows(tokenizer: BPETokenizer, cfg: PixelLMConfig, groups: list[list[Example]]) -> PackedRows:
    """Token rows for ``groups`` (``draw_examples``); the labels are the answers' tokens."""
    seg_text = seg_group_text(cfg.seg_tokens_per_target)
    rows: list[tuple[list[int], list[int], list[int]]] = []
    for group in groups:
        prompts = [build_prompt_ids(tokenizer, e.instruction, cfg.use_im_start_end, cfg.prompt_template) for e in group]
        # the shared part stops before each prompt's last token: a branch's first answer token is then
        # predicted from its own prompt, and the image placeholder (near the start) is always shared
        shared = min(len(p) for p in prompts) - 1
        for n in range(shared):
            if len({p[n] for p in prompts}) > 1:
                shared = n
                break
        if IMAGE_TOKEN_INDEX not in prompts[0][:shared]:
            raise ValueError("the prompts of one scene share no image placeholder")
        ids, labels, branch = prompts[0][:shared], [IGNORE_INDEX] * shared, [0] * shared
        for number, (example, prompt) in enumerate(zip(group, prompts), start=1):
            answer = tokenizer.encode(fill_seg(example.question.answer, seg_text)) + [tokenizer.eos_id]
            ids = ids + prompt[shared:] + answer
            labels = labels + [IGNORE_INDEX] * (len(prompt) - shared) + answer
            branch = branch + [number] * (len(prompt) - shared + len(answer))
        rows.append((ids, labels, branch))
    length = max(len(ids) for ids, _, _ in rows)
    packed = PackedRows(
        input_ids=torch.full((len(rows), length), tokenizer.pad_id),
        labels=torch.full((len(rows), length), IGNORE_INDEX),
        branch=torch.full((len(rows), length), -1),
    )
    for b, (ids, labels, branch) in enumerate(rows):
        packed.input_ids[b, : len(ids)] = torch.tensor(ids)
        packed.labels[b, : len(ids)] = torch.tensor(labels)
        packed.branch[b, : len(ids)] = torch.tensor(branch)
    return packed


def branch_attention(branch: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) branch ids and 0/1 attention -> the (B, 1, T, T) bool mask (True: attend) under which each
    question reads the shared tokens and its own, causally, and never another question's; and the (B, T)
    positions (each branch continues from the shared tokens' end, as its prompt would alone).
    A position always attends to itself, so that padding rows stay finite."""
    length = branch.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    same = (branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])
    mask = causal & same & attention.bool()[:, None, :]
    mask |= torch.eye(length, dtype=torch.bool)
    shared = (branch == 0).sum(dim=1, keepdim=True)
    within = torch.zeros_like(branch)
    for number in range(1, int(branch.max()) + 1):
        mine = branch == number
        within = torch.where(mine, mine.long().cumsum(dim=1) - 1, within)
    positions = torch.where(branch > 0, shared + within, torch.arange(length).expand_as(branch))
    return mask[:, None], positions


def stage2_loss(
    model: PixelLMForCausalLM, tokenizer: BPETokenizer, scenes: Stage2Scenes, groups: list[list[Example]],
    distillation_weight: float, dtype: torch.dtype = AUTOCAST_DTYPE,
) -> Stage2Losses:
    """The losses of one step over ``groups`` (``draw_examples``): each group one sequence, its
    questions reading their scene's tokens once (``pack_rows``, ``branch_attention``). ``dtype``: the
    CPU autocast type of the LLM's forward (float32: none)."""
    packed = pack_rows(tokenizer, model.config, groups)
    index = torch.tensor([group[0].scene for group in groups])
    tokens = model.object_tokenizer.token_projector(
        scenes.embeddings[index], scenes.attributes[index], scenes.places[index]
    )
    neighbours = None if scenes.neighbours is None else scenes.neighbours[index]
    embeds, mask = model.object_sequence(tokens, scenes.attributes[index], scenes.places[index], scenes.valid[index],
                                         neighbours)
    feats = ImageFeatures(llm_tokens=embeds, llm_mask=mask, decoder_features=[])
    spliced = model.splice_image(packed.input_ids, feats, labels=packed.labels, attention_mask=packed.attention)
    # the placeholder sits in each row's leading run of shared tokens (branch 0): its image tokens lengthen that run
    branch = torch.cat([packed.branch.new_zeros(len(groups), embeds.shape[1] - 1), packed.branch], dim=1)
    attend, positions = branch_attention(branch, spliced.attention_mask)
    autocast = dtype != torch.float32 and spliced.embeds.device.type == "cpu"
    with torch.autocast("cpu", dtype=dtype, enabled=autocast):
        hidden = model.language_model.model(inputs_embeds=spliced.embeds, attention_mask=attend,
                                            position_ids=positions).last_hidden_state
        assert spliced.labels is not None
        targets = spliced.labels[:, 1:]
        answer = targets != IGNORE_INDEX
        logits = model.language_model.lm_head(hidden[:, :-1][answer])
    token_ce = F.cross_entropy(logits.float(), targets[answer])

    before_seg = seg_state_mask(spliced.token_ids, tokenizer.seg_token_ids) & spliced.attention_mask.bool()
    distillation = hidden.new_zeros(()).float()
    if bool(before_seg.any()):
        prompts = model.seg_prompts(hidden[before_seg].float())  # (T, L, D): rows in order, each row's targets in order
        teacher = torch.cat([scenes.teacher[e.scene, e.slots] for group in groups for e in group if e.slots])
        distillation = F.mse_loss(prompts, teacher) / teacher.pow(2).mean().clamp(min=1e-6)
    total = token_ce + distillation_weight * distillation
    return Stage2Losses(total, float(token_ce.detach()), float(distillation.detach()))
