"""The conversations the model is trained on: prompt = the engine's, labels = answer + eos, seg tokens per target."""

from __future__ import annotations

import numpy as np
import torch

from pixellm_ros.engine.prompt import build_prompt_ids
from pixellm_ros.model import IMAGE_TOKEN_INDEX
from pixellm_ros.model.losses import IGNORE_INDEX
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from pixellm_ros.training.dataset import (
    StepBatches,
    WorldSampler,
    collate_samples,
    encode_conversation,
    make_conversation,
    seg_token_text,
    step_rng,
)
from pixellm_ros.world import make_questions, sample_scene


def test_labels_keep_only_the_answer_and_eos(world_tokenizer: PixelLMTokenizer) -> None:
    instruction = "Where are the balls? Please respond with segmentation mask."
    answer = f"The red ball {seg_token_text(world_tokenizer)} and the blue ball {seg_token_text(world_tokenizer)}."
    ids, labels = encode_conversation(world_tokenizer, instruction, answer)
    prompt = build_prompt_ids(world_tokenizer, instruction)

    assert len(ids) == len(labels)
    assert ids[: len(prompt)] == prompt  # the engine's exact prompt ids
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    assert labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert labels[len(prompt) :] == ids[len(prompt) :]  # every answer token counts
    assert labels[-1] == world_tokenizer.eos_id and ids[-1] == world_tokenizer.eos_id
    answered = [t for t in labels if t != IGNORE_INDEX]
    assert world_tokenizer.decode(answered[:-1], skip_special=True) == "The red ball and the blue ball."
    seg_ids = world_tokenizer.seg_token_ids
    assert [t for t in answered if t in seg_ids] == seg_ids * 2


def test_seg_tokens_match_the_targets(world_tokenizer: PixelLMTokenizer) -> None:
    seg_ids = world_tokenizer.seg_token_ids
    per_target = len(seg_ids)
    checked_counts = set()
    for index in range(6):
        rng = np.random.default_rng(index)
        scene = sample_scene(rng, (112, 112), max_objects=6)
        _, masks = scene.render()
        for question in make_questions(scene, rng, max_questions=6):
            conversation = make_conversation(world_tokenizer, question, masks)
            count = len(question.target_ids)
            checked_counts.add(count)
            seg_positions = [i for i, t in enumerate(conversation.input_ids) if t in seg_ids]
            assert len(seg_positions) == per_target * count
            # complete groups [SEG0]..[SEG5], consecutive, one per target
            for group in range(count):
                span = seg_positions[group * per_target : (group + 1) * per_target]
                assert span == list(range(span[0], span[0] + per_target))
                assert [conversation.input_ids[i] for i in span] == seg_ids
            assert conversation.target_masks.shape == (count, 112, 112)
            for mask, target_id in zip(conversation.target_masks, question.target_ids):
                assert np.array_equal(mask, masks[target_id])
    assert 0 in checked_counts and max(checked_counts) >= 2  # "none" and multi-target answers were seen


def test_stream_is_a_function_of_seed_and_step(sampler: WorldSampler) -> None:
    stream = StepBatches(sampler, images_per_step=2, total_steps=10, seed=3, start_step=0)
    first = stream.samples_for_step(4)
    again = StepBatches(sampler, images_per_step=2, total_steps=10, seed=3, start_step=4)
    resumed = next(iter(again))
    for a, b in zip(first, resumed):
        assert np.array_equal(a.image, b.image)
        assert [c.input_ids for c in a.conversations] == [c.input_ids for c in b.conversations]
    other_seed = StepBatches(sampler, images_per_step=2, total_steps=10, seed=4).samples_for_step(4)
    assert not np.array_equal(first[0].image, other_seed[0].image)
    assert not np.array_equal(
        sampler.sample(step_rng(3, 4, 0)).image, sampler.sample(step_rng(3, 5, 0)).image
    )


def test_collate_pads_right_and_indexes_images(sampler: WorldSampler, config) -> None:  # type: ignore[no-untyped-def]
    samples = [sampler.sample(step_rng(0, 0, i)) for i in range(2)]
    batch = collate_samples(samples, config, pad_id=0)
    conversations = [c for s in samples for c in s.conversations]
    assert batch.pixel_values.shape == (2, 3, config.image_size, config.image_size)
    assert batch.num_conversations == len(conversations)
    expected_owner = [i for i, s in enumerate(samples) for _ in s.conversations]
    assert batch.image_index.tolist() == expected_owner
    for row, conversation in enumerate(conversations):
        n = len(conversation.input_ids)
        assert batch.input_ids[row, :n].tolist() == conversation.input_ids
        assert batch.attention_mask[row].tolist() == [1] * n + [0] * (batch.input_ids.shape[1] - n)
        assert bool((batch.labels[row, n:] == IGNORE_INDEX).all())
        assert torch.equal(batch.gt_masks[row], torch.from_numpy(conversation.target_masks).float())
