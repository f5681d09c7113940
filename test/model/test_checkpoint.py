"""load_pixellm / save_pixellm / save_released_layout on tiny models built here from a tiny CLIP."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, LlamaConfig

from pixellm_ros.model import PixelLMConfig, PixelLMForCausalLM
from pixellm_ros.model.checkpoint import (
    CheckpointError,
    LoadOptionError,
    load_clip_vision_weights,
    load_pixellm,
    resolve_device,
    save_pixellm,
    save_released_layout,
)
from pixellm_ros.model.config import clip_vision_config
from pixellm_ros.model.fused_projections import has_fused_projections, unfuse_projections
from pixellm_ros.model.released_config import ReleasedLayoutError
from pixellm_ros.model.tokenizer import IMAGE_TOKEN_INDEX, PixelLMTokenizer
from pixellm_ros.model.vision import resize_clip_position_embeddings

torch.set_num_threads(1)

PRETRAINED_SIZE = 168  # tiny CLIP's own size: a 12 x 12 grid (CLIP-L/14-336: 24 x 24)
RUN_SIZE = 224  # the run size: a 16 x 16 grid (released: 32 x 32 at 448)
VALID_HW = (150, 224)  # a landscape image, padded at the bottom
PROMPT = "A chat. USER: <im_start><image><im_end>\nSegment the red cup. ASSISTANT:"


def tiny_clip_config() -> CLIPVisionConfig:
    # 12 layers so that the released second feature layer (-11) exists
    return clip_vision_config(32, 64, 12, 4, PRETRAINED_SIZE)


def released_style_config(vocab_size: int) -> PixelLMConfig:
    """A tiny config that a released config.json can express: every field the released code
    hard-codes keeps its released value; only what config.json / the CLIP folder say is small."""
    vision = tiny_clip_config()
    vision.image_size = RUN_SIZE
    text = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=512, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        tie_word_embeddings=False,
    )
    return PixelLMConfig(text=text, vision=vision, vision_pretrained_image_size=PRETRAINED_SIZE, out_dim=32)


def perturb_(model: torch.nn.Module, seed: int) -> None:
    """Give every tensor distinct values (LayerNorms start as all-ones: a swapped key would not show)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # the saved tensors only: the rotary frequencies are computed, never loaded
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.numel() > 0:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CLIPVisionModel folder at the pretrained grid, as transformers 5 writes it (bare keys)."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("clip_vision")
    CLIPVisionModel(tiny_clip_config()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def writer(clip_dir: Path, tiny_tokenizer: PixelLMTokenizer) -> PixelLMForCausalLM:
    """The model that writes the released folder: built on the tiny CLIP (loaded and resized)."""
    torch.manual_seed(2)
    model = PixelLMForCausalLM(released_style_config(len(tiny_tokenizer)))
    perturb_(model, seed=3)
    load_clip_vision_weights(model, clip_dir)
    return model.eval()


@pytest.fixture(scope="module")
def released_dir(
    writer: PixelLMForCausalLM, tiny_tokenizer: PixelLMTokenizer, clip_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("released")
    save_released_layout(writer, tiny_tokenizer, folder, clip_folder=clip_dir, max_shard_bytes=400_000)
    return folder


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """(1, 3, S, S) normalised pixels, zero below the valid rows."""
    pixels = torch.randn(1, 3, RUN_SIZE, RUN_SIZE, generator=torch.Generator().manual_seed(4))
    pixels[:, :, VALID_HW[0] :, :] = 0.0
    return pixels


def run_model(model: PixelLMForCausalLM, tokenizer: PixelLMTokenizer, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Image features, LLM logits and decoder masks of one prompt, in float32."""
    with torch.no_grad():
        feats = model.encode_images(pixels.to(device=model.device, dtype=model.dtype), [VALID_HW])
        ids = torch.tensor([tokenizer.encode(PROMPT)], device=model.device)
        embeds, attention = model.embed_prompt(ids, feats)
        out = model.language_model(inputs_embeds=embeds, attention_mask=attention, output_hidden_states=True)
        hidden = out.hidden_states[-1][0]
        per_target = model.config.seg_tokens_per_target
        masks = model.masks_from_hidden_states(hidden[-2 * per_target :], feats.decoder_features)
    outputs = {
        "llm_tokens": feats.llm_tokens,
        "llm_mask": feats.llm_mask,
        "logits": out.logits,
        "masks": masks.low_res_logits,
        "iou": masks.iou_scores,
    }
    outputs.update({f"decoder_features_{i}": f for i, f in enumerate(feats.decoder_features)})
    return {k: v.float() if v.is_floating_point() else v for k, v in outputs.items()}


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    differing = [k for k in sa if sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k])]
    assert differing == []


def edit_shards(folder: Path, edit: Callable[[dict[str, dict[str, torch.Tensor]]], None]) -> None:
    """Rewrite a released folder's shards (and index) after ``edit`` changed {shard name: state}."""
    index_path = folder / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    shards = {name: torch.load(folder / name, weights_only=True) for name in set(index["weight_map"].values())}
    edit(shards)
    for name, state in shards.items():
        torch.save(state, folder / name)
    index["weight_map"] = {key: name for name, state in shards.items() for key in state}
    index_path.write_text(json.dumps(index))


def copy_folder(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


# ---------------------------------------------------------------------------------- CLIP tower
def test_clip_weights_are_loaded_and_resized(writer: PixelLMForCausalLM, clip_dir: Path) -> None:
    # the reference is transformers' own reading of the folder, resized with the released quirk
    source = CLIPVisionModel.from_pretrained(clip_dir).state_dict()
    tower = {k.removeprefix("vision_tower.vision_model."): v for k, v in writer.state_dict().items()
             if k.startswith("vision_tower.vision_model.")}
    assert tower.keys() == source.keys()
    table = source["embeddings.position_embedding.weight"]
    assert table.shape[0] == 12 * 12 + 1 and tower["embeddings.position_embedding.weight"].shape[0] == 16 * 16 + 1
    assert torch.equal(tower["embeddings.position_embedding.weight"], resize_clip_position_embeddings(table, 16))
    # the quirk: the last (class) row of CLIP's table is kept as the last row
    assert torch.equal(tower["embeddings.position_embedding.weight"][-1], table[-1])
    assert [k for k in source if k != "embeddings.position_embedding.weight" and not torch.equal(source[k], tower[k])] == []


# ---------------------------------------------------------------------------------- released layout
def test_released_folder_has_the_released_layout(released_dir: Path, clip_dir: Path, writer: PixelLMForCausalLM) -> None:
    names = sorted(p.name for p in released_dir.iterdir())
    shards = [n for n in names if n.startswith("pytorch_model-")]
    assert len(shards) >= 2 and shards[0].endswith(f"-of-{len(shards):05d}.bin")
    assert {"config.json", "generation_config.json", "pytorch_model.bin.index.json", "tokenizer.model",
            "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"} <= set(names)

    config = json.loads((released_dir / "config.json").read_text())
    assert config["architectures"] == ["PixelLMForCausalLM"] and config["model_type"] == "llava"
    assert config["mm_vision_tower"] == str(clip_dir.resolve())
    assert (config["mm_vision_select_layer"], config["mm_hidden_size"], config["image_feature_scale_num"]) == (-2, 32, 2)
    assert (config["resize_vision_tower_size"], config["out_dim"], config["separate_mm_projector"]) == (RUN_SIZE, 32, True)
    assert config["mm_use_im_start_end"] and config["pad_train_clip_images"] and config["torch_dtype"] == "float32"

    keys = set(json.loads((released_dir / "pytorch_model.bin.index.json").read_text())["weight_map"])
    assert all(k.startswith(("model.", "lm_head.")) for k in keys)
    assert not any("vision" in k for k in keys)  # the CLIP tower is not inside
    for key in [
        "model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "model.layers.1.mlp.down_proj.weight",
        "model.mm_projector.2.weight", "model.out_mm_projector.0.bias", "model.image_feature_neck.2.weight",
        "model.image_feature_neck.3.bias", "model.text_hidden_fcs.0.2.weight",
        "model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", "model.prompt_encoder.no_mask_embed.weight",
        "model.prompt_encoder.mask_downscaling.0.weight", "model.prompt_encoder.point_embeddings.3.weight",
        "model.mask_decoder.transformer.1.layers.1.cross_attn_image_to_token.out_proj.weight",
        "model.mask_decoder.transformer.0.final_attn_token_to_image.q_proj.weight",
        "model.mask_decoder.transformer.0.norm_final_attn.weight", "model.mask_decoder.upsample_2x.0.weight",
        "model.mask_decoder.pe1.positional_encoding_gaussian_matrix", "model.mask_decoder.level_embed.weight",
        "model.mask_decoder.output_hypernetworks_mlps.3.layers.2.weight", "model.mask_decoder.iou_prediction_head.layers.2.bias",
        "model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.1.self_attn.rotary_emb.inv_freq",
    ]:
        assert key in keys, key
    expected = len([k for k in writer.state_dict() if not k.startswith("vision_tower.")]) + 2  # + inv_freq x 2 layers
    assert len(keys) == expected


def test_released_folder_reproduces_the_writer(
    released_dir: Path, writer: PixelLMForCausalLM, tiny_tokenizer: PixelLMTokenizer, image: torch.Tensor
) -> None:
    model, tokenizer = load_pixellm(released_dir, progress=False)  # CLIP from mm_vision_tower
    assert tokenizer.added_tokens == tiny_tokenizer.added_tokens
    assert model.config.seg_tokens_per_scale == 3 and model.config.vision_select_layers == (-2, -11)
    assert not model.training
    assert_same_state(model, writer)
    expected, actual = run_model(writer, tiny_tokenizer, image), run_model(model, tokenizer, image)
    assert expected["llm_mask"].sum() < expected["llm_mask"].numel()  # the padding is masked: a real case
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name


def test_a_released_folder_loads_fused_and_computes_the_same(
    released_dir: Path, clip_dir: Path, writer: PixelLMForCausalLM, tiny_tokenizer: PixelLMTokenizer,
    image: torch.Tensor, tmp_path: Path,
) -> None:
    """Strict loading sees the released keys; the projections are fused after it; the savers
    refuse the fused model (checkpoints keep the released layout) until it is unfused."""
    on_cpu, _ = load_pixellm(released_dir, progress=False, fuse_projections=None)
    assert not has_fused_projections(on_cpu)  # the default fuses on CUDA only
    model, tokenizer = load_pixellm(released_dir, progress=False, fuse_projections=True)
    assert has_fused_projections(model) and not model.training
    expected, actual = run_model(writer, tiny_tokenizer, image), run_model(model, tokenizer, image)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, atol=1e-6, rtol=0, msg=name)
    with pytest.raises(CheckpointError, match="unfuse_projections"):
        save_pixellm(model, tokenizer, tmp_path / "ours")
    with pytest.raises(ReleasedLayoutError, match="unfuse_projections"):
        save_released_layout(model, tokenizer, tmp_path / "released", clip_folder=clip_dir)
    assert not (tmp_path / "ours").exists() and not (tmp_path / "released").exists()
    unfuse_projections(model)
    assert_same_state(model, writer)


def test_clip_from_a_full_clip_model_folder(
    released_dir: Path, writer: PixelLMForCausalLM, clip_dir: Path, tmp_path: Path
) -> None:
    # openai/clip-vit-large-patch14-336 is a full CLIPModel: vision_model.* next to text_model.* and projections
    vision = CLIPVisionModel.from_pretrained(clip_dir)
    full = CLIPModel(CLIPConfig(
        vision_config=tiny_clip_config().to_dict(),
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                     "vocab_size": 100, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        projection_dim=32,
    ))
    full.vision_model.load_state_dict(vision.state_dict())
    full.save_pretrained(tmp_path / "full_clip")
    model, _ = load_pixellm(released_dir, clip_dir=tmp_path / "full_clip", progress=False)
    assert_same_state(model, writer)


def test_clip_from_a_legacy_bin_with_position_ids(
    released_dir: Path, writer: PixelLMForCausalLM, clip_dir: Path, tmp_path: Path
) -> None:
    # transformers < 4.31 wrote vision_model.* keys and the position_ids buffer into pytorch_model.bin
    vision = CLIPVisionModel.from_pretrained(clip_dir)
    state = {f"vision_model.{k}": v for k, v in vision.state_dict().items()}
    grid = PRETRAINED_SIZE // 14
    state["vision_model.embeddings.position_ids"] = torch.arange(grid * grid + 1).expand(1, -1)
    legacy = tmp_path / "legacy_clip"
    legacy.mkdir()
    torch.save(state, legacy / "pytorch_model.bin")
    shutil.copy(clip_dir / "config.json", legacy / "config.json")
    model, _ = load_pixellm(released_dir, clip_dir=legacy, progress=False)
    assert_same_state(model, writer)

    state["vision_model.embeddings.position_ids"] = torch.arange(grid * grid + 1).flip(0).expand(1, -1)
    torch.save(state, legacy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="position_ids"):
        load_pixellm(released_dir, clip_dir=legacy, progress=False)


def test_unexpected_key_is_named(released_dir: Path, tmp_path: Path) -> None:
    folder = copy_folder(released_dir, tmp_path)

    def add_key(shards: dict[str, dict[str, torch.Tensor]]) -> None:
        next(iter(shards.values()))["model.mask_decoder.extra_head.weight"] = torch.zeros(3)

    edit_shards(folder, add_key)
    with pytest.raises(CheckpointError, match=r"unexpected.*model\.mask_decoder\.extra_head\.weight"):
        load_pixellm(folder, progress=False)


def test_missing_key_is_named(released_dir: Path, tmp_path: Path) -> None:
    folder = copy_folder(released_dir, tmp_path)

    def drop_key(shards: dict[str, dict[str, torch.Tensor]]) -> None:
        for state in shards.values():
            state.pop("model.mask_decoder.level_embed.weight", None)

    edit_shards(folder, drop_key)
    with pytest.raises(CheckpointError, match=r"missing.*model\.mask_decoder\.level_embed\.weight"):
        load_pixellm(folder, progress=False)


def test_missing_clip_key_is_named(released_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    vision = CLIPVisionModel.from_pretrained(clip_dir)
    state = {k: v for k, v in vision.state_dict().items() if k != "post_layernorm.bias"}
    broken = tmp_path / "broken_clip"
    broken.mkdir()
    torch.save(state, broken / "pytorch_model.bin")
    shutil.copy(clip_dir / "config.json", broken / "config.json")
    with pytest.raises(CheckpointError, match=r"missing.*post_layernorm\.bias"):
        load_pixellm(released_dir, clip_dir=broken, progress=False)


def test_only_the_exact_inv_freq_keys_are_skipped(released_dir: Path, tmp_path: Path) -> None:
    index = json.loads((released_dir / "pytorch_model.bin.index.json").read_text())
    assert "model.layers.0.self_attn.rotary_emb.inv_freq" in index["weight_map"]  # and the folder loads (above)
    folder = copy_folder(released_dir, tmp_path)

    def add_near_miss(shards: dict[str, dict[str, torch.Tensor]]) -> None:
        next(iter(shards.values()))["model.rotary_emb.inv_freq"] = torch.ones(8)

    edit_shards(folder, add_near_miss)
    with pytest.raises(CheckpointError, match=r"unexpected.*model\.rotary_emb\.inv_freq"):
        load_pixellm(folder, progress=False)


def test_wrong_shape_is_named(released_dir: Path, tmp_path: Path) -> None:
    folder = copy_folder(released_dir, tmp_path)

    def shrink(shards: dict[str, dict[str, torch.Tensor]]) -> None:
        for state in shards.values():
            if "model.mm_projector.0.bias" in state:
                state["model.mm_projector.0.bias"] = state["model.mm_projector.0.bias"][:-1]

    edit_shards(folder, shrink)
    with pytest.raises(CheckpointError, match=r"model\.mm_projector\.0\.bias"):
        load_pixellm(folder, progress=False)


def test_released_folder_without_a_local_clip(released_dir: Path, tmp_path: Path) -> None:
    folder = copy_folder(released_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["mm_vision_tower"] = "openai/clip-vit-large-patch14-336"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="clip_dir"):
        load_pixellm(folder, progress=False)


def test_released_safetensors_shards_load(
    released_dir: Path, writer: PixelLMForCausalLM, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    folder = copy_folder(released_dir, tmp_path)
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    weight_map = {}
    for number, name in enumerate(sorted(set(index["weight_map"].values())), start=1):
        shard = f"model-{number:05d}.safetensors"
        save_file(torch.load(folder / name, weights_only=True), folder / shard)
        weight_map.update({k: shard for k, v in index["weight_map"].items() if v == name})
        (folder / name).unlink()
    (folder / "pytorch_model.bin.index.json").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model, _ = load_pixellm(folder, progress=False)
    assert_same_state(model, writer)


def test_save_released_layout_writes_a_pretrained_grid_clip(
    writer: PixelLMForCausalLM, tiny_tokenizer: PixelLMTokenizer, clip_dir: Path, tmp_path: Path
) -> None:
    new_clip = tmp_path / "written_clip"
    save_released_layout(writer, tiny_tokenizer, tmp_path / "released", clip_folder=new_clip, clip_source=clip_dir)
    written = CLIPVisionModel.from_pretrained(new_clip)  # transformers reads the folder we wrote
    assert written.config.image_size == PRETRAINED_SIZE
    source = CLIPVisionModel.from_pretrained(clip_dir)
    assert_same_state(written, source)
    model, _ = load_pixellm(tmp_path / "released", progress=False)
    assert_same_state(model, writer)


def test_save_released_layout_refuses_what_it_cannot_express(
    writer: PixelLMForCausalLM, tiny_tokenizer: PixelLMTokenizer, clip_dir: Path, tmp_path: Path
) -> None:
    # the resized table cannot be resized back without the CLIP it came from
    with pytest.raises(ReleasedLayoutError, match="clip_source"):
        save_released_layout(writer, tiny_tokenizer, tmp_path / "a", clip_folder=tmp_path / "new_clip")
    # a CLIP folder that is not the tower's
    torch.manual_seed(9)
    other = tmp_path / "other_clip"
    CLIPVisionModel(tiny_clip_config()).save_pretrained(other)
    with pytest.raises(ReleasedLayoutError, match="not the CLIP"):
        save_released_layout(writer, tiny_tokenizer, tmp_path / "b", clip_folder=other)
    # decoder sizes and vision layers that the released config.json has no field for
    tiny = PixelLMForCausalLM(PixelLMConfig.tiny(vocab_size=len(tiny_tokenizer)))
    with pytest.raises(ReleasedLayoutError, match="cannot express"):
        save_released_layout(tiny, tiny_tokenizer, tmp_path / "c", clip_folder=tmp_path / "tiny_clip")


# ---------------------------------------------------------------------------------- our own format
@pytest.fixture(scope="module")
def ours_model(tiny_tokenizer: PixelLMTokenizer) -> PixelLMForCausalLM:
    """A small model with non-released sizes and a learned fusion: our format must keep all of it."""
    torch.manual_seed(5)
    config = PixelLMConfig.tiny(vocab_size=len(tiny_tokenizer))
    config.fusion = "learned"
    model = PixelLMForCausalLM(config)
    perturb_(model, seed=6)
    return model.eval()


@pytest.fixture(scope="module")
def ours_dir(
    ours_model: PixelLMForCausalLM, tiny_tokenizer: PixelLMTokenizer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("ours")
    save_pixellm(ours_model, tiny_tokenizer, folder)
    return folder


def test_our_format_round_trips_bit_exactly(
    ours_dir: Path, ours_model: PixelLMForCausalLM, tiny_tokenizer: PixelLMTokenizer
) -> None:
    assert sorted(p.name for p in ours_dir.iterdir()) == [
        "added_tokens.json", "model.safetensors", "pixellm_config.json", "special_tokens_map.json",
        "tokenizer.model", "tokenizer_config.json",
    ]
    model, tokenizer = load_pixellm(ours_dir, progress=False)
    assert model.config.to_dict() == ours_model.config.to_dict()
    assert any(k.startswith("seg_fusion.") for k in model.state_dict())
    assert_same_state(model, ours_model)
    size = model.config.image_size
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a = ours_model.encode_images(pixels, [(size, size * 2 // 3)])
        b = model.encode_images(pixels, [(size, size * 2 // 3)])
    assert torch.equal(a.llm_tokens, b.llm_tokens)
    assert tokenizer.encode(PROMPT) == tiny_tokenizer.encode(PROMPT)


def test_bf16_load(ours_dir: Path, ours_model: PixelLMForCausalLM) -> None:
    model, _ = load_pixellm(ours_dir, dtype="bfloat16", progress=False)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    # the rotary frequencies are computed, not loaded, and stay float32 as transformers keeps them
    assert model.language_model.model.rotary_emb.inv_freq.dtype == torch.float32
    reference = ours_model.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key].to(value.dtype)), key
    fp16, _ = load_pixellm(ours_dir, dtype=torch.float16, progress=False)
    assert {p.dtype for p in fp16.parameters()} == {torch.float16}


def test_our_folder_with_a_missing_key(ours_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = copy_folder(ours_dir, tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["seg_fusion.projection.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing.*seg_fusion\.projection\.weight"):
        load_pixellm(folder, progress=False)


# ---------------------------------------------------------------------------------- options and errors
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_4bit_without_gpu_is_a_clear_error(ours_dir: Path) -> None:
    with pytest.raises(LoadOptionError, match="CUDA is not available") as info:
        load_pixellm(ours_dir, load_in="4bit", progress=False)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        assert "bitsandbytes package is not installed" in str(info.value)
    with pytest.raises(LoadOptionError, match="'3bit'"):
        load_pixellm(ours_dir, load_in="3bit", progress=False)


def test_nonexistent_model_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_pixellm(missing)


def test_folder_without_a_checkpoint(tiny_tokenizer_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="neither"):
        load_pixellm(tiny_tokenizer_dir)


def test_devices(ours_dir: Path) -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(LoadOptionError, match="unknown device"):
        load_pixellm(ours_dir, device="gpu0")
    with pytest.raises(LoadOptionError, match="unsupported device"):
        resolve_device("meta")
    absent = f"cuda:{torch.cuda.device_count()}"
    expected = "does not exist" if torch.cuda.is_available() else "CUDA is not available"
    with pytest.raises(LoadOptionError, match=expected):
        load_pixellm(ours_dir, device=absent)
    with pytest.raises(LoadOptionError, match="unknown dtype"):
        load_pixellm(ours_dir, dtype="int8")


def test_image_placeholder_constant_is_shared() -> None:
    from pixellm_ros.model import IMAGE_TOKEN_INDEX as model_index
    from pixellm_ros.model import constants, pixellm

    assert constants.IMAGE_TOKEN_INDEX == -200  # LLaVA's placeholder id
    assert IMAGE_TOKEN_INDEX is model_index is pixellm.IMAGE_TOKEN_INDEX is constants.IMAGE_TOKEN_INDEX
