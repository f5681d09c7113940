"""Engine latency against research-style decoding, on one machine in one run (CPU, mid-size model).

Research-style decoding is the released code's: no KV cache, and the whole sequence AND the
vision tower recomputed at every generated token. Both paths run the same randomly initialised
model on the same image and are scripted (a logits hook) to produce the same 64 tokens, two
complete seg groups included, with end-of-sequence suppressed, so they do identical useful work.

Printed ratios (targets): research-style / engine per query (>= 10x) and first query on an image
/ second query on the same image, whose vision features are cached (>= 1.5x).

    python benchmarks/bench_engine.py [--tokens 64] [--repeats 3] [--threads 2]
    python benchmarks/bench_engine.py --smoke      # the tiny test config, one round (the test suite)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_common import GROUP, bench_tokenizer  # noqa: E402
from smoke import add_smoke_argument, report  # noqa: E402

from pixellm_ros.engine import PixelLMEngine, SegmentationResult  # noqa: E402
from pixellm_ros.engine.forcing import ScriptedTokens  # noqa: E402
from pixellm_ros.model import PixelLMConfig, PixelLMForCausalLM  # noqa: E402
from pixellm_ros.model.config import clip_vision_config, llama_text_config  # noqa: E402

INSTRUCTION = "Segment the red cup and the blue block. Please respond with segmentation mask."


def mid_size_config(vocab_size: int) -> PixelLMConfig:
    """CLIP at the released 448 px (1024 patches) with 4 layers of half CLIP-L's width; a 4-layer H=256 LLaMA."""
    vision = clip_vision_config(512, 2048, 4, 8, image_size=448)
    text = llama_text_config(
        vocab_size=vocab_size, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
        num_attention_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-6,
    )
    return PixelLMConfig(
        text=text, vision=vision, vision_select_layers=(-2, -4), vision_tower_name="bench-clip",
        out_dim=64, decoder_mlp_dim=256, decoder_num_heads=4, decoder_upscale_channels=8, iou_head_hidden_dim=64,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="generated tokens per query")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--research-repeats", type=int, default=1, help="research-style runs (slow; <= repeats)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps shared machines steady)")
    add_smoke_argument(parser)
    args = parser.parse_args()
    if args.smoke:
        args.tokens, args.repeats, args.research_repeats = 32, 1, 1
    torch.set_num_threads(args.threads)

    tokenizer = bench_tokenizer()
    torch.manual_seed(0)
    config = PixelLMConfig.tiny(vocab_size=len(tokenizer)) if args.smoke else mid_size_config(len(tokenizer))
    model = PixelLMForCausalLM(config).eval()
    engine = PixelLMEngine(model, tokenizer, max_new_tokens=args.tokens)
    image = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)

    script = tokenizer.encode(f"Sure, the red cup {GROUP} and the blue block {GROUP}.", add_bos=False)
    hook = ScriptedTokens(script, len(engine.prompt_ids(INSTRUCTION)), suppress=[tokenizer.eos_id])

    def engine_query() -> SegmentationResult:
        result = engine.segment(image, INSTRUCTION, logits_processor=hook)
        assert result.generated_tokens == args.tokens and len(result.targets) == 2
        return result

    def research_query() -> SegmentationResult:
        result = engine.segment_research_style(image, INSTRUCTION, logits_processor=hook)
        assert result.generated_tokens == args.tokens and len(result.targets) == 2
        return result

    engine_query()  # warm-up (allocator, kernels)
    # Interleaved, so that a change in machine load hits all three paths alike; medians reported.
    first, second, research = [], [], []
    vision, prefill = [], []
    for repeat in tqdm(range(args.repeats), desc="benchmark rounds"):
        engine.clear_cache()
        start = time.perf_counter()
        result = engine_query()
        first.append((time.perf_counter() - start) * 1e3)
        vision.append(result.timings["vision_ms"])
        start = time.perf_counter()
        result = engine_query()
        second.append((time.perf_counter() - start) * 1e3)
        prefill.append(result.timings["prefill_ms"])
        ours = result
        if repeat < args.research_repeats:
            start = time.perf_counter()
            reference = research_query()
            research.append((time.perf_counter() - start) * 1e3)
    first_ms, second_ms, research_ms = (statistics.median(x) for x in (first, second, research))

    same = ours.text == reference.text and ours.generated_tokens == reference.generated_tokens and all(
        np.count_nonzero(a.mask != b.mask) <= 2 for a, b in zip(ours.targets, reference.targets)
    )

    params = sum(p.numel() for p in model.parameters()) / 1e6
    sizes = "tiny test config" if args.smoke else "CLIP 448 px 4x512, LLaMA 4x256"
    print(f"model: {params:.1f} M parameters ({sizes}), {args.tokens} generated tokens, "
          f"{torch.get_num_threads()} threads, {torch.__version__}")
    print(f"prompt: {len(engine.prompt_ids(INSTRUCTION)) - 1 + config.image_token_len} positions; "
          f"same tokens and masks on both paths: {same}")
    print(f"engine, new image       : {first_ms:9.1f} ms/query (vision tower {statistics.median(vision):.1f} ms)")
    print(f"engine, cached image    : {second_ms:9.1f} ms/query (prefill {statistics.median(prefill):.1f} ms)")
    print(f"research-style decoding : {research_ms:9.1f} ms/query")
    print(f"research-style / engine : {research_ms / first_ms:9.1f}x   (target >= 10x)")
    print(f"first / second query    : {first_ms / second_ms:9.2f}x   (target >= 1.5x)")
    report({"first_query_ms": first_ms, "cached_query_ms": second_ms, "research_ms": research_ms,
            "research_over_engine": research_ms / first_ms, "first_over_second": first_ms / second_ms,
            "same_answers": same, "tokens": args.tokens})


if __name__ == "__main__":
    main()
