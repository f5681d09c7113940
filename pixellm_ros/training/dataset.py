"""Training data rendered on the fly from the tabletop world: images, conversations, target masks.

Every step's data is a pure function of ``(seed, step)``: image ``i`` of step ``s`` is drawn from
``np.random.default_rng([seed, s, i])``. A resumed run therefore sees exactly the batches the
uninterrupted run would have seen, without saving any loader state.

A conversation is the llava_v1 prompt the engine builds (``engine.prompt``), followed by the
answer with each ``{seg}`` replaced by the N*L seg tokens ``[SEG0]..[SEG{N*L-1}]`` and by ``</s>``.
Labels keep only the answer and the eos: the prompt, the image and the padding are IGNORE_INDEX.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pixellm_ros.engine.preprocess import preprocess_image
from pixellm_ros.engine.prompt import build_prompt_ids, build_prompt_text
from pixellm_ros.model.config import PixelLMConfig
from pixellm_ros.model.losses import IGNORE_INDEX
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from pixellm_ros.world.ontology import Split
from pixellm_ros.world.phrasing import count_placeholders, fill_seg
from pixellm_ros.world.questions import KIND_WEIGHTS, Question, all_questions, draw_questions
from pixellm_ros.world.scene import sample_scene

from .batch import TrainingBatch
from .curriculum import Curriculum


def seg_token_text(tokenizer: PixelLMTokenizer) -> str:
    """The string one target is written as: "[SEG0][SEG1]..[SEG{N*L-1}]" (all seg tokens, in order)."""
    return "".join(tokenizer.id_to_token(i) for i in tokenizer.seg_token_ids)


def encode_conversation(
    tokenizer: PixelLMTokenizer, instruction: str, answer: str, use_im_start_end: bool = True
) -> tuple[list[int], list[int]]:
    """Token ids and labels of one single-turn conversation.

    ``answer`` is the final answer text (seg tokens already in it). The ids are the engine's prompt
    ids followed by the answer's ids and eos; labels are IGNORE_INDEX over the prompt, the ids
    themselves over the answer and eos. Raises ValueError if the joint encoding does not start
    with the prompt ids (the model would then be trained on prompts the engine never builds).
    """
    prompt_ids = build_prompt_ids(tokenizer, instruction, use_im_start_end)
    # llava_v1 renders the assistant turn as "ASSISTANT: {answer}</s>".
    full_ids = tokenizer.encode(f"{build_prompt_text(instruction, use_im_start_end)} {answer}", add_bos=True)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(f"the answer changes the prompt's tokens: {instruction!r} / {answer!r}")
    full_ids.append(tokenizer.eos_id)
    labels = [IGNORE_INDEX] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return full_ids, labels


@dataclass(frozen=True)
class Conversation:
    """One question about an image, ready for the model.

    input_ids / labels: equal-length lists (one IMAGE_TOKEN_INDEX in input_ids);
    target_masks: (T, H, W) bool, one per ``{seg}`` of the answer, in answer order.
    target_names: the T targets' names as the answer writes them ("red ball"); () when unknown.
    """

    instruction: str
    answer: str
    kind: str
    input_ids: list[int]
    labels: list[int]
    target_masks: np.ndarray
    target_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageSample:
    """A rendered scene and the conversations about it; image (H, W, 3) uint8 RGB."""

    image: np.ndarray
    conversations: list[Conversation]


def make_conversation(
    tokenizer: PixelLMTokenizer,
    question: Question,
    masks: np.ndarray,
    use_im_start_end: bool = True,
    names: Sequence[str] = (),
) -> Conversation:
    """A world Question + the scene's (K, H, W) instance masks (+ its objects' names) -> Conversation."""
    if count_placeholders(question.answer) != len(question.target_ids):
        raise ValueError(f"answer {question.answer!r} does not hold one seg placeholder per target {question.target_ids}")
    answer = fill_seg(question.answer, seg_token_text(tokenizer))
    input_ids, labels = encode_conversation(tokenizer, question.question, answer, use_im_start_end)
    target_masks = masks[list(question.target_ids)] if question.target_ids else np.zeros((0, *masks.shape[1:]), bool)
    target_names = tuple(names[i] for i in question.target_ids) if names else ()
    return Conversation(question.question, answer, question.kind, input_ids, labels, target_masks, target_names)


@dataclass
class WorldSampler:
    """Draws images and questions from the world.

    image_sizes / size_weights: the rendered (height, width) sizes and how often each is drawn
    (the engine resizes the longest side to the model's size; landscape frames teach the padding).
    questions_per_image: conversations per image (distinct questions; fewer if a scene has fewer).
    none_rate: share of "there is no such object" questions.
    curriculum: kind weights as a function of training progress (None: the world's own weights).
    """

    tokenizer: PixelLMTokenizer
    use_im_start_end: bool = True
    split: Split = "train"
    image_sizes: Sequence[tuple[int, int]] = ((224, 224),)
    size_weights: Sequence[float] | None = None
    questions_per_image: int = 3
    none_rate: float = 0.1
    min_objects: int = 2
    max_objects: int = 8
    curriculum: Curriculum | None = None

    def kind_weights(self, progress: float) -> Mapping[str, float]:
        return self.curriculum.weights(progress) if self.curriculum is not None else KIND_WEIGHTS

    def sample(self, rng: np.random.Generator, progress: float = 1.0) -> ImageSample:
        """One image and its conversations; ``progress`` in [0, 1] feeds the curriculum."""
        sizes = list(self.image_sizes)
        weights = None if self.size_weights is None else np.asarray(self.size_weights, float) / sum(self.size_weights)
        size = sizes[int(rng.choice(len(sizes), p=weights))]
        scene = sample_scene(rng, size, split=self.split, min_objects=self.min_objects, max_objects=self.max_objects)
        rgb, masks = scene.render()
        names = [obj.name for obj in scene.objects]
        questions = self.pick_questions(all_questions(scene, rng, self.split), rng, progress)
        return ImageSample(
            image=rgb,
            conversations=[
                make_conversation(self.tokenizer, q, masks, self.use_im_start_end, names) for q in questions
            ],
        )

    def pick_questions(
        self, pools: dict[str, list[Question]], rng: np.random.Generator, progress: float
    ) -> list[Question]:
        """Up to questions_per_image distinct questions: kind by weight ("none" at none_rate), then one of its candidates."""
        weights = self.kind_weights(progress)
        pools = {kind: list(questions) for kind, questions in pools.items()}
        return draw_questions(pools, rng, self.questions_per_image, weights, self.none_rate)


# First word of every training-stream seed: keeps the stream apart from the world's MUSE export
# (``world.muse_export.scene_rng`` seeds with [seed, split, index]) whatever seeds both use.
TRAIN_STREAM_TAG = 0x5EED_7A1B


def step_rng(seed: int, step: int, image: int) -> np.random.Generator:
    """The generator of image ``image`` of training step ``step``."""
    return np.random.default_rng([TRAIN_STREAM_TAG, int(seed), int(step), int(image)])


@dataclass
class StepBatches(IterableDataset):
    """The training stream: for step s = start_step, start_step+1, ... the list of ImageSamples.

    With DataLoader workers, worker k makes the steps s with s % num_workers == k; the loader's
    round-robin keeps them in step order, so the stream is the same with any number of workers.
    """

    sampler: WorldSampler
    images_per_step: int
    total_steps: int
    seed: int = 0
    start_step: int = 0
    curriculum_steps: int = 0  # the steps over which the curriculum's progress goes 0 -> 1 (0: total_steps)

    def __post_init__(self) -> None:
        super().__init__()

    def samples_for_step(self, step: int) -> list[ImageSample]:
        horizon = self.curriculum_steps if self.curriculum_steps > 0 else self.total_steps
        progress = min(step / max(horizon - 1, 1), 1.0)
        return [self.sampler.sample(step_rng(self.seed, step, i), progress) for i in range(self.images_per_step)]

    def __iter__(self) -> Iterator[list[ImageSample]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start_step, self.total_steps):
            if step % workers == worker:
                yield self.samples_for_step(step)


def collate_samples(samples: Sequence[ImageSample], config: PixelLMConfig, pad_id: int) -> TrainingBatch:
    """ImageSamples -> a right-padded TrainingBatch (images pre-processed exactly as the engine does)."""
    pixel_values, valid_hw, original_hw = [], [], []
    image_index: list[int] = []
    rows: list[tuple[list[int], list[int]]] = []
    gt_masks: list[torch.Tensor] = []
    target_names: list[tuple[str, ...]] = []
    for index, sample in enumerate(samples):
        pre = preprocess_image(sample.image, config.image_size, config.pixel_mean, config.pixel_std)
        pixel_values.append(pre.pixel_values[0])
        valid_hw.append(pre.valid_hw)
        original_hw.append(pre.original_hw)
        for conversation in sample.conversations:
            image_index.append(index)
            rows.append((conversation.input_ids, conversation.labels))
            gt_masks.append(torch.from_numpy(conversation.target_masks).float())
            target_names.append(conversation.target_names)
    if not rows:
        raise ValueError("a batch needs at least one conversation")
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (ids, labs) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention[row, : len(ids)] = 1
    return TrainingBatch(
        pixel_values=torch.stack(pixel_values),
        valid_hw=valid_hw,
        original_hw=original_hw,
        image_index=torch.tensor(image_index, dtype=torch.long),
        input_ids=input_ids,
        labels=labels,
        attention_mask=attention,
        gt_masks=gt_masks,
        target_names=target_names,
    )
