"""The whole training recipe at a tiny size, on the real pretrained parts: scenes, stage 1, stage 2,
export, and the exported folder answering exactly as the trained model did; a stopped run resumes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pixellm_ros.engine import BatchRequest, EngineError, PixelLMEngine, SegmentationResult
from pixellm_ros.model.base_parts import ADDED_EMBEDDINGS, LORA_A
from pixellm_ros.model.pretrained_llm import load_pretrained_llm_state
from pixellm_ros.training.embedded_config import BASE_LLM
from pixellm_ros.training.export import PROMPT_HEAD_FILE, export_embedded
from pixellm_ros.training.run import STAGE1_FILE, STAGE2_FILE, new_embedded_model, stage1_digest, train
from pixellm_ros.training.scenes import build_pool
from pixellm_ros.training.settings import TrainSettings, recipe
from pixellm_ros.training.stage1 import PromptHead
from pixellm_ros.training.stage2 import (
    add_adapters,
    branch_attention,
    draw_examples,
    frozen_weights_in,
    pack_rows,
    prepare_scenes,
    stage2_loss,
    stage2_parameters,
)
from pixellm_ros.world.ontology import COLOUR_NAMES, SHAPE_NAMES, SIZE_NAMES
from pixellm_ros.world.questions import KIND_WEIGHTS
from pixellm_ros.world.scene import sample_scene

pytestmark = pytest.mark.timeout(900)  # tiny runs on the real package LLM (the tiny recipe: its first 4 layers)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("tiny_run")
    result = train(out, recipe("tiny", eval_questions=2), progress=False, log=lambda line: None)
    return out, result


def test_the_run_writes_its_folder_and_a_small_delta_model(run) -> None:  # type: ignore[no-untyped-def]
    out, result = run
    for name in ("log.txt", "history.json", "summary.json", "stage1.pt", "stage2.pt", "loss_curve.png"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert len(history["stage1"]) == recipe("tiny").stage1_steps and len(history["stage2"]) == recipe("tiny").stage2_steps
    assert all(np.isfinite(row["total"]) for row in history["stage1"] + history["stage2"])
    # the run's first look at the model through the engine, after the export
    assert [(row["step"], row["num_questions"]) for row in history["eval"]] == [(recipe("tiny").stage2_steps, 2)]
    assert json.loads((out / "summary.json").read_text())["evaluation"]["num_questions"] == 2
    from safetensors import safe_open

    with safe_open(str(result.model_dir / "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert ADDED_EMBEDDINGS in keys and any(k.endswith(LORA_A) for k in keys)
    assert not any(k.startswith("image_encoder.") or k.startswith("language_model.model.") and "lora" not in k for k in keys)


def test_the_exported_folder_answers_as_the_trained_model(run) -> None:  # type: ignore[no-untyped-def]
    """The folder (adapters merged into the package's LLM at load, float16 deltas) gives the tokens and
    masks of the trained model (adapters as peft layers) once that model's trained tensors are rounded
    to float16 the same way."""
    _, result = run
    model = result.model.eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("image_encoder.") and (not name.startswith("language_model.") or "lora_" in name
                                                           or "trainable_tokens" in name):
                parameter.copy_(parameter.half().float())
    image, _ = sample_scene(np.random.default_rng(5), (240, 320)).render()
    trained = PixelLMEngine(model, result.tokenizer).segment(image, "Find every red ball.", max_new_tokens=12)
    loaded = PixelLMEngine.from_pretrained(result.model_dir).segment(image, "Find every red ball.", max_new_tokens=12)
    assert loaded.text == trained.text and loaded.generated_tokens == trained.generated_tokens
    assert len(loaded.targets) == len(trained.targets)
    for a, b in zip(loaded.targets, trained.targets):
        union = np.logical_or(a.mask, b.mask).sum()
        assert union == 0 or np.logical_and(a.mask, b.mask).sum() / union > 0.98


def test_each_object_is_read_with_its_attribute_and_place_words(run) -> None:  # type: ignore[no-untyped-def]
    """Per slot the LLM reads the object token, its size / colour / shape words and the digits of the
    tenth of the image its centre lies in, across then down ("small red ball 0 9")."""
    _, result = run
    model, tokenizer = result.model.eval(), result.tokenizer
    cfg = model.config
    assert cfg.object_words == 6 and cfg.image_token_len == cfg.object_tokens * 6
    hidden = cfg.hidden_size
    tokens = torch.randn(1, 2, hidden)
    attributes = torch.zeros(1, 2, sum(cfg.object_attributes))
    colour, shape, size = 0, len(COLOUR_NAMES), len(COLOUR_NAMES) + len(SHAPE_NAMES)
    attributes[0, 0, [colour + COLOUR_NAMES.index("red"), shape + SHAPE_NAMES.index("ball"), size + SIZE_NAMES.index("small")]] = 1
    attributes[0, 1, [colour + COLOUR_NAMES.index("blue"), shape + SHAPE_NAMES.index("cup"), size + SIZE_NAMES.index("large")]] = 1
    places = torch.tensor([[[0.04, 0.97, 0.1], [0.55, 0.31, 0.2]]])
    with torch.no_grad():
        sequence, mask = model.object_sequence(tokens, attributes, places, torch.tensor([[True, False]]))
        table = model.language_model.get_input_embeddings()
        expected = [[" small", " red", " ball", "0", "9"], [" large", " blue", " cup", "5", "3"]]
        for slot, words in enumerate(expected):
            assert torch.equal(sequence[0, 6 * slot], tokens[0, slot])
            ids = [tokenizer.encode(word) for word in words]
            assert all(len(piece) == 1 for piece in ids)
            assert torch.allclose(sequence[0, 6 * slot + 1 : 6 * slot + 6], table(torch.tensor([p[0] for p in ids])))
    assert mask.tolist() == [[True] * 6 + [False] * 6]
    # written also nearest the camera first (object_orders): the left-to-right list, then the same
    # slots again with the nearer one (the blue cup at y 0.9) first
    far_first, both_valid = torch.tensor([[[0.04, 0.2, 0.1], [0.55, 0.9, 0.2]]]), torch.tensor([[True, True]])
    try:
        with torch.no_grad():
            one, _ = model.object_sequence(tokens, attributes, far_first, both_valid)
            model.config = dataclasses.replace(cfg, object_orders=("left_to_right", "front_to_back"))
            both, both_mask = model.object_sequence(tokens, attributes, far_first, both_valid)
    finally:
        model.config = cfg
    assert both.shape[1] == 2 * one.shape[1] == 24 and torch.equal(both[:, :12], one)
    assert torch.equal(both[0, 12:18], one[0, 6:12]) and torch.equal(both[0, 18:], one[0, :6]) and both_mask.all()


def test_the_neighbour_words_are_the_nearest_objects_own_words(run) -> None:  # type: ignore[no-untyped-def]
    """object_neighbour_words: after its place words each slot carries the attribute words of its
    nearest object (" large blue cup"), the very embeddings that object's slot reads."""
    _, result = run
    model = result.model.eval()
    cfg = model.config
    groups = len(cfg.object_tag_groups)
    tokens = torch.randn(1, 3, cfg.hidden_size)
    attributes = torch.zeros(1, 3, sum(cfg.object_attributes))
    starts = np.cumsum((0,) + cfg.object_attributes[:-1])
    for slot in range(3):  # a different value of every attribute group in each slot
        for start, size in zip(starts, cfg.object_attributes):
            attributes[0, slot, start + slot % size] = 1.0
    places = torch.tensor([[[0.1, 0.5, 0.1], [0.3, 0.8, 0.1], [0.9, 0.2, 0.1]]])
    valid, neighbours = torch.tensor([[True, True, True]]), torch.tensor([[1, 0, 1]])
    try:
        model.config = dataclasses.replace(cfg, object_neighbour_words=True)
        with torch.no_grad():
            sequence, mask = model.object_sequence(tokens, attributes, places, valid, neighbours)
    finally:
        model.config = cfg
    words = cfg.object_words + groups
    assert sequence.shape[1] == 3 * words and mask.all()
    for slot, neighbour in enumerate([1, 0, 1]):
        name = sequence[0, words * neighbour + 1: words * neighbour + 1 + groups]  # that object's own words
        torch.testing.assert_close(sequence[0, words * (slot + 1) - groups: words * (slot + 1)], name)
    assert not torch.equal(sequence[0, 1: 1 + groups], sequence[0, words + 1: words + 1 + groups])
    marker = 2141  # " near" in SmolLM2's vocabulary
    try:
        model.config = dataclasses.replace(cfg, object_neighbour_words=True, object_neighbour_marker_token_id=marker)
        with torch.no_grad():
            marked, _ = model.object_sequence(tokens, attributes, places, valid, neighbours)
    finally:
        model.config = cfg
    # each slot: its words as before, the marker's own embedding, then the neighbour's words
    row = model.language_model.get_input_embeddings().weight[marker].to(marked.dtype)
    for slot in range(3):
        start = (words + 1) * slot
        torch.testing.assert_close(marked[0, start: start + words - groups], sequence[0, words * slot: words * (slot + 1) - groups])
        torch.testing.assert_close(marked[0, start + words - groups], row)
        torch.testing.assert_close(marked[0, start + words + 1 - groups: start + words + 1], sequence[0, words * (slot + 1) - groups: words * (slot + 1)])


def test_a_model_with_neighbour_words_answers_through_the_engine(run) -> None:  # type: ignore[no-untyped-def]
    """The engine's path (detections -> neighbours -> slot words -> LLM) with the neighbour's words:
    the image tokens are as many as the config says, and the answer comes back."""
    _, result = run
    model = result.model.eval()
    cfg = model.config
    image = sample_scene(np.random.default_rng(5), (240, 320)).render()[0]
    try:
        model.config = dataclasses.replace(cfg, object_neighbour_words=True)
        engine = PixelLMEngine(model, result.tokenizer, max_new_tokens=12)
        with torch.no_grad():
            features = model.encode_images(*_pixels(engine, image))
            outcome = engine.segment(image, "Which object is closest to the red ball?")
    finally:
        model.config = cfg
    assert features.llm_tokens.shape[1] == model.config.object_tokens * (cfg.object_words + len(cfg.object_tag_groups))
    assert isinstance(outcome, SegmentationResult) and outcome.generated_tokens > 0


def _pixels(engine: PixelLMEngine, image: np.ndarray) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    pre = engine._preprocess(image)
    return pre.pixel_values, [pre.valid_hw]


def test_the_object_orders_setting_builds_the_model_that_reads_them() -> None:
    settings = recipe("tiny", object_orders="left_to_right, front_to_back")
    model, _ = new_embedded_model(settings, progress=False)
    assert model.config.object_orders == ("left_to_right", "front_to_back")
    assert model.config.image_token_len == 2 * model.config.object_tokens * model.config.object_words
    with pytest.raises(ValueError, match="object_orders"):
        new_embedded_model(recipe("tiny", object_orders="sideways"), progress=False)
    plain = recipe("tiny", object_neighbour_words=True, object_neighbour_marker="")
    model, _ = new_embedded_model(plain, progress=False)
    assert model.config.object_neighbour_words and not recipe("tiny").object_neighbour_words
    assert model.config.object_neighbour_marker_token_id == -1
    marked = recipe("tiny", object_neighbour_words=True, object_neighbour_marker="near")
    model, tokenizer = new_embedded_model(marked, progress=False)
    assert tokenizer.decode([model.config.object_neighbour_marker_token_id]) == " near"
    with pytest.raises(ValueError, match="one"):  # a marker of two tokens
        new_embedded_model(dataclasses.replace(marked, object_neighbour_marker="nearest-neighbour"), progress=False)
    # without the neighbour's words the slots carry no marker either, whatever the marker setting says
    unmarked = recipe("tiny", object_neighbour_words=False, object_neighbour_marker="near")
    assert unmarked.slot_marker == "" and marked.slot_marker == "near"
    model, _ = new_embedded_model(unmarked, progress=False)
    assert not model.config.object_neighbour_words and model.config.object_neighbour_marker_token_id == -1


def test_llm_layers_keep_those_of_the_base_and_the_exported_folder_loads_them(tmp_path: Path) -> None:
    """``llm_layers`` "0-1,29": the LLM is the package's layers 0, 1 and 29 (its embedding and final
    norm too), and a folder exported from it loads those layers strictly, answering through the
    engine; a folder asking layers the base does not have is refused, as are such settings."""
    _, base = load_pretrained_llm_state(BASE_LLM, progress=False)
    model, tokenizer = new_embedded_model(recipe("tiny", llm_layers="0-1,29"), progress=False)
    llm = model.language_model
    assert len(llm.model.layers) == model.config.text.num_hidden_layers == 3
    assert model.config.base_llm_layers == (0, 1, 29)
    assert torch.equal(llm.model.layers[1].mlp.down_proj.weight, base["model.layers.1.mlp.down_proj.weight"])
    assert torch.equal(llm.model.layers[2].mlp.down_proj.weight, base["model.layers.29.mlp.down_proj.weight"])
    assert torch.equal(llm.model.norm.weight, base["model.norm.weight"])
    add_adapters(model, tokenizer, 2)
    folder = export_embedded(model, tokenizer, tmp_path / "model", dtype=torch.float32)
    engine = PixelLMEngine.from_pretrained(folder)
    assert torch.equal(engine.model.language_model.model.layers[2].mlp.down_proj.weight,
                       model.language_model.model.layers[2].mlp.down_proj.weight)
    image, _ = sample_scene(np.random.default_rng(5), (240, 320)).render()
    assert engine.segment(image, "Find every red ball.", max_new_tokens=4).generated_tokens > 0
    config_file = folder / "pixellm_config.json"
    config = json.loads(config_file.read_text())
    config["base_llm_layers"] = [0, 1, 30]
    config_file.write_text(json.dumps(config))
    with pytest.raises(EngineError, match=r"LLM layers \[0, 1, 30\] asked of"):
        PixelLMEngine.from_pretrained(folder)
    config["base_llm_layers"], config["text"]["num_hidden_layers"] = [], 31  # the first 31
    config_file.write_text(json.dumps(config))
    with pytest.raises(EngineError, match="asked of"):
        PixelLMEngine.from_pretrained(folder)
    with pytest.raises(ValueError, match="has layers 0-29"):
        new_embedded_model(recipe("tiny", llm_layers="0-30"), progress=False)
    for wrong in ("-1", "2,1", "0-2,2", "a", "5-3"):
        with pytest.raises(ValueError, match="llm_layers"):
            recipe("tiny", llm_layers=wrong)
    assert recipe("tiny", llm_layers=" 0-2, 8 ,28-29").base_layers == (0, 1, 2, 8, 28, 29)


def test_a_batch_of_questions_answers_as_each_alone(run) -> None:  # type: ignore[no-untyped-def]
    """Images with different numbers of objects (different numbers of object tokens, so rows of
    different lengths, left-padded) in one segment_batch give each question's own answer."""
    _, result = run
    engine = PixelLMEngine.from_pretrained(result.model_dir)
    images = [sample_scene(np.random.default_rng(seed), (240, 320)).render()[0] for seed in (5, 9)]
    questions = [(images[0], "Find every red ball."), (images[1], "Where is the green cup?"),
                 (images[1], "Which objects could roll away?")]
    alone = [engine.segment(image, text, max_new_tokens=10) for image, text in questions]
    together = engine.segment_batch([BatchRequest(image, text, max_new_tokens=10) for image, text in questions])
    for one, batched in zip(alone, together):
        assert isinstance(batched, SegmentationResult)
        assert batched.text == one.text and len(batched.targets) == len(one.targets)


def test_questions_of_one_scene_in_one_sequence_read_only_their_scene_and_themselves() -> None:
    """Branch ids [shared, shared, q1, q1, q2, q2, pad]: q2 reads the shared tokens and itself, never
    q1, and its positions continue from the shared tokens' end as if q1 were not there."""
    branch = torch.tensor([[0, 0, 1, 1, 2, 2, -1]])
    attend, positions = branch_attention(branch, torch.tensor([[1, 1, 1, 1, 1, 1, 0]]))
    assert positions.tolist() == [[0, 1, 2, 3, 2, 3, 6]]
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 1, 1, 0],
        [1, 1, 0, 0, 0, 0, 1],  # padding reads only itself among the padding, so its row stays finite
    ], dtype=torch.bool)
    assert torch.equal(attend[0, 0], expected)


@pytest.fixture(scope="module")
def every_object_scenes(run):  # type: ignore[no-untyped-def]
    """The tiny run's scene pool and stage-2 scenes, every object given a slot (the slot of object i is
    i): the tiny run's detector finds little, and what these tests check is how questions are asked."""
    out, result = run
    settings = recipe("tiny")
    pool = build_pool(result.model, settings.train_scenes, "train", settings.seed, settings.wide_scene_share,
                      out / "scenes", progress=False)
    scenes = prepare_scenes(result.model, PromptHead.for_model(result.model), pool)
    slots = scenes.valid.shape[1]
    scenes.valid[:] = True
    scenes.object_slot = [{i: i for i in range(min(len(objects), slots))} for objects in pool.objects]
    return pool, scenes


def test_packed_questions_give_the_losses_of_each_question_alone(run, every_object_scenes):  # type: ignore[no-untyped-def]
    """Stage 2's losses over scenes whose questions share one sequence (``questions_per_scene``) equal,
    in float32, the losses of the same questions one sequence each: packing saves the scene's tokens and
    changes nothing that is learnt."""
    _, result = run
    model = result.model
    pool, scenes = every_object_scenes
    groups = draw_examples(scenes, pool, 9, seed=3, step=0, phrasing_rate=0.5, none_rate=0.15, per_scene=3)
    assert sum(len(g) for g in groups) == 9 and max(len(g) for g in groups) >= 2 and len(groups) < 9
    packed = pack_rows(result.tokenizer, model.config, groups)
    assert int(packed.branch.max()) == max(len(g) for g in groups)
    alone = [[example] for group in groups for example in group]
    assert pack_rows(result.tokenizer, model.config, alone).input_ids.shape[0] == 9
    with torch.no_grad():
        together = stage2_loss(model, result.tokenizer, scenes, groups, 1.0, dtype=torch.float32)
        separate = stage2_loss(model, result.tokenizer, scenes, alone, 1.0, dtype=torch.float32)
    assert together.token_ce == pytest.approx(separate.token_ce, rel=1e-4)
    assert together.distillation == pytest.approx(separate.distillation, rel=1e-4)
    assert together.token_ce > 0 and together.distillation > 0


def test_frozen_weights_held_in_bfloat16_change_no_loss_and_no_gradient(run, every_object_scenes):  # type: ignore[no-untyped-def]
    """``frozen_weights_in``: stage 2's frozen Linear weights held in bfloat16 (not cast by autocast
    on every forward) give the same losses and gradients, bit for bit, as the float32 weights cast
    each time; on leaving, the float32 originals are back (the same tensors)."""
    _, result = run
    model = result.model
    pool, scenes = every_object_scenes
    groups = draw_examples(scenes, pool, 6, seed=5, step=0, phrasing_rate=0.5, none_rate=0.15, per_scene=3)
    params = stage2_parameters(model)
    originals = {name: p for name, p in model.language_model.named_parameters() if p.dtype == torch.float32}

    def losses_and_gradients() -> tuple[tuple[float, float], list[torch.Tensor]]:
        for p in params:
            p.grad = None
        losses = stage2_loss(model, result.tokenizer, scenes, groups, 1.0)
        losses.total.backward()
        return (losses.token_ce, losses.distillation), [p.grad.clone() for p in params if p.grad is not None]

    cast_each_time, cast_gradients = losses_and_gradients()
    with frozen_weights_in(model) as held:
        assert held == 7 * len(model.language_model.model.layers)
        assert model.language_model.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
        held_losses, held_gradients = losses_and_gradients()
    assert held_losses == cast_each_time and cast_each_time[0] > 0
    assert len(held_gradients) == len(cast_gradients) > 0
    assert all(torch.equal(a, b) for a, b in zip(held_gradients, cast_gradients))
    assert all(p is originals[name] for name, p in model.language_model.named_parameters() if name in originals)
    for p in params:
        p.grad = None


def test_list_rate_asks_scenes_for_every_object_first(run, every_object_scenes):  # type: ignore[no-untyped-def]
    """``list_rate`` 1: every scene's sequence starts with "list every object", whose answer points at
    each object's slot left to right, then the scene's other questions; 0: never asked."""
    _, result = run
    pool, scenes = every_object_scenes
    groups = draw_examples(scenes, pool, 9, seed=3, step=0, phrasing_rate=0.5, none_rate=0.15, per_scene=3,
                           list_rate=1.0)
    assert sum(len(g) for g in groups) == 9
    for group in groups:
        first, objects = group[0], pool.scenes[group[0].scene].objects
        assert first.question.kind == "everything" and len(first.slots) == len(objects)
        assert first.slots == sorted(range(len(objects)), key=lambda i: (objects[i].center[0], objects[i].id))
        assert all(e.question.kind != "everything" for e in group[1:])
    plain = draw_examples(scenes, pool, 9, seed=3, step=0, phrasing_rate=0.5, none_rate=0.15, per_scene=3)
    assert not any(e.question.kind == "everything" for g in plain for e in g)
    with torch.no_grad():
        losses = stage2_loss(result.model, result.tokenizer, scenes, groups, 1.0, dtype=torch.float32)
    assert np.isfinite(losses.token_ce) and losses.distillation > 0


def test_a_stopped_run_resumes_where_it_was_and_a_finished_one_goes_on_with_more_steps(tmp_path: Path) -> None:
    """Stopped at stage 2's step 2 of 3 (as on SIGINT / SIGTERM in the CLI), ``train --resume`` goes on
    from there; then ``train --resume --stage2-steps 4`` on the finished run trains stage 2 on to 4
    (following 4's schedule from the saved step, as test_settings checks), and nothing else again."""
    settings = recipe("tiny", stage2_steps=3)
    with pytest.raises(KeyboardInterrupt, match="stopped in stage 2 at step 2"):
        train(tmp_path, settings, progress=False, log=lambda line: None,
              stop_requested=lambda stage, step: stage == "stage2" and step == 2)
    saved = torch.load(tmp_path / STAGE2_FILE, weights_only=False)
    assert saved["step"] == 2 and not saved["done"]
    first = {name: torch.load(tmp_path / file, weights_only=False)["seconds"] for name, file in
             (("stage1", STAGE1_FILE), ("stage2", STAGE2_FILE))}
    assert first["stage1"] > 0 and first["stage2"] > 0
    with pytest.raises(FileExistsError):
        train(tmp_path, settings, progress=False, log=lambda line: None)
    lines: list[str] = []
    train(tmp_path, settings, resume=True, progress=False, log=lines.append)
    assert any("stage 1: resumed at step" in line and "(done)" in line for line in lines)
    assert any("stage 2: resumed at step 2" in line for line in lines)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["step"] for row in history["stage2"]] == [1, 2, 3]
    # the summary's stage times are both invocations': stage 1 all the first's, stage 2 the first's two steps and more
    seconds = json.loads((tmp_path / "summary.json").read_text())["seconds"]
    assert seconds["stage1"] == first["stage1"] and seconds["stage2"] > first["stage2"]
    assert seconds["total"] > seconds["stage1"] + seconds["stage2"]
    assert torch.load(tmp_path / STAGE2_FILE, weights_only=False)["done"]

    lines.clear()
    train(tmp_path, recipe("tiny", stage2_steps=4), resume=True, progress=False, log=lines.append)
    assert any("stage 1: resumed at step" in line and "(done)" in line for line in lines)
    assert any(line.endswith("stage 2: resumed at step 3") for line in lines), lines
    saved = torch.load(tmp_path / STAGE2_FILE, weights_only=False)
    assert saved["step"] == 4 and saved["done"]
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["step"] for row in history["stage2"]] == [1, 2, 3, 4]


def test_a_run_takes_stage1_from_an_exported_folder(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``train(stage1_from=folder)`` (``--stage1-from``): stage 1's parts and prompt head are the folder's
    (float16, as exported), no stage-1 step is trained, stage 2 runs and exports a folder that can
    seed the next such run, and the run's summary names the folder, resumed or not (its loss curve's
    stage-1 panel says so); a folder without the prompt head is refused, naming the file."""
    from safetensors.torch import load_file

    _, first = run
    assert (first.model_dir / PROMPT_HEAD_FILE).is_file()
    lines: list[str] = []
    second = train(tmp_path / "second", recipe("tiny", stage2_steps=2), progress=False, log=lines.append,
                   stage1_from=first.model_dir)
    assert any(f"stage 1: taken from {first.model_dir}" in line for line in lines)
    assert any("stage 1: resumed at step" in line and "(done)" in line for line in lines)
    history = json.loads((tmp_path / "second" / "history.json").read_text())
    assert history["stage1"] == [] and [row["step"] for row in history["stage2"]] == [1, 2]
    exported = load_file(str(first.model_dir / "model.safetensors"))
    trained = second.model.state_dict()
    stage1_keys = [k for k in exported if k.startswith(("object_tokenizer.pyramid.", "mask_decoder."))]
    assert stage1_keys
    for key in stage1_keys:  # frozen in stage 2: still exactly the folder's
        assert torch.equal(trained[key], exported[key].float()), key
    head = torch.load(tmp_path / "second" / STAGE1_FILE, weights_only=False)["prompt_head"]
    for key, value in load_file(str(first.model_dir / PROMPT_HEAD_FILE)).items():
        assert torch.equal(head[key], value.float()), key
    assert (second.model_dir / PROMPT_HEAD_FILE).is_file()
    assert json.loads((tmp_path / "second" / "summary.json").read_text())["stage1_from"] == str(first.model_dir)
    train(tmp_path / "second", recipe("tiny", stage2_steps=3), resume=True, progress=False, log=lambda line: None)
    assert json.loads((tmp_path / "second" / "summary.json").read_text())["stage1_from"] == str(first.model_dir)

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.safetensors", "pixellm_config.json"):
        (bare / name).write_bytes((first.model_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=PROMPT_HEAD_FILE):
        train(tmp_path / "third", recipe("tiny"), progress=False, log=lambda line: None, stage1_from=bare)


def test_question_kinds_set_the_mix_of_stage_2s_questions(every_object_scenes):  # type: ignore[no-untyped-def]
    """``TrainSettings.kind_weights`` reach the draws: with every kind but affordance weighted 0 (and
    "none" drawn only where a scene has no affordance question left), the questions are affordance
    ones; the world's weights draw several kinds."""
    pool, scenes = every_object_scenes
    only = TrainSettings(question_kinds=",".join(f"{k}={int(k == 'affordance')}" for k in KIND_WEIGHTS)).kind_weights
    groups = draw_examples(scenes, pool, 12, seed=3, step=0, phrasing_rate=0.5, none_rate=0.0, per_scene=3,
                           kind_weights=only)
    assert sum(len(g) for g in groups) == 12
    kinds = [e.question.kind for g in groups for e in g]
    assert set(kinds) <= {"affordance", "none"} and kinds.count("affordance") >= 9
    mixed = draw_examples(scenes, pool, 12, seed=3, step=0, phrasing_rate=0.5, none_rate=0.0, per_scene=3,
                          kind_weights=TrainSettings().kind_weights)
    assert len({e.question.kind for g in mixed for e in g}) >= 4


def test_stage1_digest_reads_the_parts_not_the_bookkeeping(run) -> None:  # type: ignore[no-untyped-def]
    """The key of stage 2's cached scene readings: a stage-1 checkpoint with the same tensors and other
    bookkeeping (another source folder, no optimizer) has the same digest; one tensor changed, another."""
    out, _ = run
    saved = torch.load(out / STAGE1_FILE, weights_only=False)
    same = {**saved, "from": "/elsewhere/default_model", "optimizer": {}, "step": 0}
    assert stage1_digest(same) == stage1_digest(saved)
    name = next(iter(saved["prompt_head"]))
    changed = {**saved, "prompt_head": {**saved["prompt_head"], name: saved["prompt_head"][name] + 1e-3}}
    assert stage1_digest(changed) != stage1_digest(saved)
