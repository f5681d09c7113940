"""PixelLM-7B-shaped engine on one GPU: time to first token, decode speed against the bandwidth bound.

No download: the network has the released 7B shapes (``PixelLMConfig.released_7b()``: CLIP-L/14 at
448, LLaMA-7B, seg codebook, pixel decoder) with random weights, built directly in bf16 on the GPU
(parameters are created on the device in the target dtype, so the init is one cheap GPU pass and
no float32 or CPU copy ever exists). A small sentencepiece tokenizer is trained on the spot; every
generated token is scripted through the engine's logits hook (a forced answer with seg groups,
end-of-sequence suppressed), so each query generates exactly ``--tokens`` tokens and decodes its
masks, while the model does all of its real work.

Printed per decode mode: time to first token (vision tower + prefill), decode tokens/s, per-query
latency (new image, cached image), peak memory, the memory-bandwidth bound for decode (bytes read
per token / GPU bandwidth) and our decode time over that bound. Targets: within 1.3x of the bound,
peak < 16 GB.

    python benchmarks/gpu_7b.py                      # dynamic cache and CUDA graph modes
    python benchmarks/gpu_7b.py --compile            # + the torch.compile'd CUDA graph mode
    python benchmarks/gpu_7b.py --size 13b           # the 13B shapes instead
    python benchmarks/gpu_7b.py --tiny               # CPU smoke test of this script (tiny config)

Last, the release check: a second engine is built, answers once and is released the way the node's
deactivate does it (``PixelLMEngine.release``); allocated / reserved / driver-free memory are printed before
and after, so a leak on deactivate shows as memory still held.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixellm_ros.engine import PixelLMEngine  # noqa: E402
from pixellm_ros.engine.forcing import ScriptedTokens  # noqa: E402
from pixellm_ros.model import PixelLMConfig, PixelLMForCausalLM  # noqa: E402
from pixellm_ros.model.constants import seg_group_text  # noqa: E402
from pixellm_ros.model.sentencepiece_training import train_llama_style_sentencepiece  # noqa: E402
from pixellm_ros.model.tokenizer import PixelLMTokenizer  # noqa: E402

# Peak HBM bandwidth by device name (vendor data sheets), bytes/s; else measured with a copy.
BANDWIDTH_TABLE: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H200",), 4.8e12),
    (("H100", "PCIE"), 2.0e12),
    (("H100",), 3.35e12),  # SXM (HBM3)
)
CORPUS = (
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: Segment the red cup on the table. Please respond with segmentation mask. ASSISTANT: Sure, it is the red cup.",
    "You can use the mug on the left, next to the bowl. The robot should pick up the blue block.",
)
INSTRUCTION = "Segment every cup and block on the table. Please respond with segmentation mask."
GROUP = seg_group_text()  # one target: "[SEG0]..[SEG5]"
ANSWER_PIECES = ("the red cup", "the blue block", "the mug on the left", "the bowl")


def log(message: str) -> None:
    print(message, flush=True)


def table_bandwidth(name: str) -> float | None:
    upper = name.upper()
    for keys, bandwidth in BANDWIDTH_TABLE:
        if all(key in upper for key in keys):
            return bandwidth
    return None


def measured_copy_bandwidth(device: torch.device, megabytes: int = 512) -> float:
    """Bytes/s of a large device-to-device copy (each byte read once and written once)."""
    source = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    for _ in range(2):
        target.copy_(source)
    sync(device)
    repeats = 10
    start = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    sync(device)
    seconds = (time.perf_counter() - start) / repeats
    del source, target
    return 2 * megabytes * 2**20 / seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(config: PixelLMConfig, device: torch.device, dtype: torch.dtype) -> PixelLMForCausalLM:
    """Random weights, created on ``device`` in ``dtype`` (init runs there; no host copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = PixelLMForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def scripted_answer(tokenizer: PixelLMTokenizer, tokens: int) -> list[int]:
    """At least ``tokens`` ids of a plausible answer: phrases, each followed by a seg group."""
    ids: list[int] = []
    index = 0
    while len(ids) < tokens:
        piece = ANSWER_PIECES[index % len(ANSWER_PIECES)]
        ids += tokenizer.encode(f"{'Sure, ' if index == 0 else ' and '}{piece} {GROUP}", add_bos=False)
        index += 1
    return ids[:tokens]


def decode_bytes_per_token(model: PixelLMForCausalLM, kv_positions: float) -> float:
    """Bytes one decode step must read: every LLaMA weight (lm_head included; of embed_tokens only
    the one row looked up) plus the K and V of ``kv_positions`` cached positions."""
    lm = model.language_model
    embed = lm.get_input_embeddings().weight
    weights = sum(p.numel() * p.element_size() for p in lm.parameters())
    weights -= embed.numel() * embed.element_size() - embed.shape[1] * embed.element_size()
    cfg = lm.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    kv = 2 * cfg.num_hidden_layers * kv_heads * head_dim * embed.element_size() * kv_positions
    return float(weights + kv)


def run_mode(engine: PixelLMEngine, image: np.ndarray, hook: ScriptedTokens, tokens: int, repeats: int) -> dict:
    device = engine.device

    def query() -> object:
        result = engine.segment(image, INSTRUCTION, logits_processor=hook)
        assert result.generated_tokens == tokens, result.generated_tokens
        return result

    start = time.perf_counter()
    query()  # warm-up: kernels, and the graph capture / compilation of the static modes
    sync(device)
    warmup_s = time.perf_counter() - start
    first, cached = [], []
    for _ in range(repeats):
        engine.clear_cache()
        first.append(query())
        cached.append(query())
    return {"warmup_s": warmup_s, "first": first, "cached": cached}


def median(results: list, key: str) -> float:
    return statistics.median(r.timings[key] for r in results)


def memory_line(device: torch.device) -> str:
    free, total = torch.cuda.mem_get_info(device)
    return (f"allocated {torch.cuda.memory_allocated(device) / 1e9:.2f} GB, reserved "
            f"{torch.cuda.memory_reserved(device) / 1e9:.2f} GB, driver free {free / 1e9:.1f} / {total / 1e9:.1f} GB")


def release_check(config: PixelLMConfig, tokenizer: PixelLMTokenizer, image: np.ndarray, script: list[int],
                  device: torch.device, dtype: torch.dtype, tokens: int) -> None:
    """Build, answer once on the CUDA-graph path, release as the node's deactivate does; print memory."""
    gc.collect()
    torch.cuda.empty_cache()
    log(f"[release] before build  : {memory_line(device)}")
    engine = PixelLMEngine(build_model(config, device, dtype), tokenizer, max_new_tokens=tokens,
                           decode_mode="cuda_graph")
    hook = ScriptedTokens(script, len(engine.prompt_ids(INSTRUCTION)), suppress=[tokenizer.eos_id])
    engine.segment(image, INSTRUCTION, logits_processor=hook)
    sync(device)
    log(f"[release] after a query : {memory_line(device)}")
    engine.release()
    log(f"[release] after release : {memory_line(device)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny config on the CPU: checks the script itself")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    parser.add_argument("--tokens", type=int, default=128, help="generated tokens per query")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default=None, help="comma list of decode modes (default: dynamic,cuda_graph; "
                                                      "dynamic,static on the CPU)")
    parser.add_argument("--compile", action="store_true", help="also run the torch.compile'd mode")
    parser.add_argument("--size", choices=("7b", "13b"), default="7b", help="released shapes to build")
    args = parser.parse_args()

    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    dtype = torch.bfloat16
    on_cuda = device.type == "cuda"
    modes = args.modes.split(",") if args.modes else (["dynamic", "cuda_graph"] if on_cuda else ["dynamic", "static"])
    if args.compile:
        modes.append("compiled")
    log(f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if on_cuda else 'cpu'}, modes {modes}")

    with tempfile.TemporaryDirectory() as folder:
        model_file = Path(folder) / "tokenizer.model"
        train_llama_style_sentencepiece(list(CORPUS) * 16, model_file, vocab_size=400)
        tokenizer = PixelLMTokenizer.build(model_file, num_seg_tokens=6)
    # The released vocabulary (32000 + 8) keeps lm_head and embed_tokens at their real size; the
    # scripted answer only uses ids our small tokenizer knows.
    if args.tiny:
        config = PixelLMConfig.tiny(vocab_size=len(tokenizer))
    else:
        config = PixelLMConfig.released_13b() if args.size == "13b" else PixelLMConfig.released_7b()
    config.text.max_position_embeddings = max(config.text.max_position_embeddings, 1024)

    # Bandwidth first, so its scratch buffers are gone before the peak-memory count starts.
    bandwidth = table_bandwidth(torch.cuda.get_device_name(device)) if on_cuda else None
    measured_bw = measured_copy_bandwidth(device)
    source = "data sheet" if bandwidth else "measured copy"
    bandwidth = bandwidth or measured_bw
    log(f"bandwidth: {bandwidth / 1e12:.2f} TB/s ({source}); measured device copy {measured_bw / 1e12:.2f} TB/s")
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    start = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(config, device, dtype)
    sync(device)
    params = sum(p.numel() for p in model.parameters())
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9
    log(f"model: {params / 1e9:.2f} B parameters, {weights_gb:.2f} GB in {dtype}, built in {time.perf_counter() - start:.1f} s")

    image = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    script = scripted_answer(tokenizer, args.tokens)

    reference = None
    for mode in modes:
        engine = PixelLMEngine(model, tokenizer, max_new_tokens=args.tokens, decode_mode=mode)
        prompt_length = len(engine.prompt_ids(INSTRUCTION))
        hook = ScriptedTokens(script, prompt_length, suppress=[tokenizer.eos_id])
        try:
            runs = run_mode(engine, image, hook, args.tokens, args.repeats)
        except Exception as exc:  # report and go on with the next mode
            log(f"[{mode}] FAILED: {type(exc).__name__}: {exc}")
            continue
        first, cached = runs["first"], runs["cached"]
        spliced_prompt = prompt_length - 1 + config.image_token_len
        per_token_bytes = decode_bytes_per_token(model, spliced_prompt + args.tokens / 2)
        bound_ms = per_token_bytes / bandwidth * 1e3
        tokens_per_s = median(first + cached, "decode_tokens_per_s")
        decode_ms = 1e3 / tokens_per_s
        log(f"[{mode}] warm-up query {runs['warmup_s']:.1f} s; prompt {spliced_prompt} positions, {args.tokens} tokens, "
            f"{len(first[0].targets)} targets")
        log(f"[{mode}] time to first token : {median(first, 'first_token_ms'):8.1f} ms "
            f"(vision {median(first, 'vision_ms'):.1f} + prefill {median(first, 'prefill_ms'):.1f}); "
            f"cached image {median(cached, 'first_token_ms'):.1f} ms")
        log(f"[{mode}] decode              : {tokens_per_s:8.1f} tokens/s = {decode_ms:.2f} ms/token")
        log(f"[{mode}] per-query latency   : {median(first, 'total_ms'):8.1f} ms new image, "
            f"{median(cached, 'total_ms'):.1f} ms cached image (mask decoding {median(first, 'decoding_ms'):.1f} ms)")
        log(f"[{mode}] bandwidth bound     : {per_token_bytes / 1e9:.2f} GB/token -> {bound_ms:.2f} ms/token; "
            f"ours / bound = {decode_ms / bound_ms:.2f}x (target <= 1.3x)")
        if reference is None:
            reference = first[0]
        else:
            diffs = [float(np.mean(a.mask != b.mask)) for a, b in zip(reference.targets, first[0].targets)]
            scores = [abs(a.score - b.score) for a, b in zip(reference.targets, first[0].targets)]
            log(f"[{mode}] vs {modes[0]}: same text {reference.text == first[0].text}, mask pixels differing "
                f"max {max(diffs, default=0):.2e}, score diff max {max(scores, default=0):.2e}")
        if on_cuda:
            log(f"[{mode}] peak memory so far  : {torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB (target < 16 GB)")
        engine.clear_cache()
        del engine

    if on_cuda:
        del model
        release_check(config, tokenizer, image, script, device, dtype, args.tokens)


if __name__ == "__main__":
    main()
