"""Batched generation against serving requests one by one, on one machine in one run.

Every request has its own image (several cameras) and its own instruction (prompts of different
lengths); every answer is scripted through the engine's logits hook to exactly ``--tokens`` tokens
(two or more complete seg groups, end-of-sequence suppressed), so both ways do identical work and
the model runs every layer for real. Weights are random; nothing is downloaded.

Part 1, N = 1, 2, 4, 8 requests arriving together: one by one (``segment`` after ``segment``, what
the node did so far) against one batch (``segment_batch``): throughput (answers/s) and per-request
latency, as ratios. Targets: >= 2.5x throughput at 4 on the CPU; on an H100 / H200 at the 7B shapes
>= 6x at 8 with per-request latency <= 1.3x of batch 1.

Part 2, what a finished row costs: one decode step at B rows, so a finished row kept in the batch
(masked) costs t(B) - t(B - 1) on every later step, against dropping it from the cache once.
On the CPU also the LLM's largest linear layer alone at M = 1, 2, 4, 8 rows (what bounds the step).

Part 3, requests arriving while a batch runs (``--arrivals`` requests, one every T1 / ``--load``,
T1 = one answer alone; ``--mixed``: answers of 0.5x / 1x / 1.5x the length in turn): one by one,
static batches (a new batch of what waits, up to ``--max-batch``, once the current one has ended)
and continuous batching (arrivals join the running batch at the next step boundary), both through a
BatchSession that hands out each answer as it ends: mean / p90 / max latency and throughput.

    python benchmarks/bench_batching.py                    # CPU, mid-size model (see mid_size_config)
    python benchmarks/bench_batching.py --gpu              # = --size 7b --device cuda: released 7B shapes, bf16
    python benchmarks/bench_batching.py --size 7b --tiny   # the GPU mode's code path, tiny config, CPU
    python benchmarks/bench_batching.py --smoke            # every part at toy sizes, seconds (the test suite)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_common import bench_config, bench_tokenizer, build_random_model, log, scripted_answer, sync  # noqa: E402
from smoke import add_smoke_argument, report  # noqa: E402

from pixellm_ros.engine import PixelLMEngine, SegmentationResult  # noqa: E402
from pixellm_ros.engine.decoders import DynamicKVDecoder  # noqa: E402
from pixellm_ros.engine.batching import BatchRequest  # noqa: E402
from pixellm_ros.engine.forcing import ScriptedTokens  # noqa: E402
from pixellm_ros.model import PixelLMConfig  # noqa: E402
from pixellm_ros.model.config import clip_vision_config, llama_text_config  # noqa: E402

# Different lengths on purpose: the batch pads them.
INSTRUCTIONS = (
    "Segment the red cup and the blue block. Please respond with segmentation mask.",
    "Where is the mug?",
    "Which things on the table could hold hot coffee? Please respond with segmentation mask.",
    "Find the bowl.",
    "Segment every cup and block on the table that the robot could pick up with one hand. Please respond with segmentation mask.",
    "What is next to the bowl?",
    "Show the blue block.",
    "Segment the objects on the left of the table, next to the mug. Please respond with segmentation mask.",
)
CONCURRENCY = (1, 2, 4, 8)
FIGURES: dict[str, float] = {}  # the run's key figures, reported as one JSON line at the end


def mid_size_config(vocab_size: int) -> PixelLMConfig:
    """CLIP at the released 448 px (1024 patches, 16x16 = 256 LLM image tokens as released) with 4
    layers of half CLIP-L's width; a LLaMA of 8 layers x 1024 (MLP 2816, 16 heads): 101 M LLM
    parameters, 0.4 GB in float32. That is 13x this machine's 32 MB L3 cache, so a decode step at
    batch 1 streams every weight from DRAM and is weight-read bound (0.2 GFLOP against 0.4 GB per
    token), like a 7B on a GPU; a batch reads the weights once for all of its rows."""
    vision = clip_vision_config(512, 2048, 4, 8, image_size=448)
    text = llama_text_config(
        vocab_size=vocab_size, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
        num_attention_heads=16, max_position_embeddings=2048, rms_norm_eps=1e-6,
    )
    return PixelLMConfig(
        text=text, vision=vision, vision_select_layers=(-2, -4), vision_tower_name="bench-clip",
        out_dim=64, decoder_mlp_dim=256, decoder_num_heads=4, decoder_upscale_channels=8, iou_head_hidden_dim=64,
    )


class Workload:
    """Requests with distinct images and instructions, answers of exactly ``tokens`` tokens."""

    def __init__(self, engine: PixelLMEngine, tokens: int, image_hw: tuple[int, int]) -> None:
        self.engine = engine
        self.tokens = tokens
        self.image_hw = image_hw
        self.script = scripted_answer(engine.tokenizer, 2 * tokens)
        self.rng = np.random.default_rng(0)
        self.groups = self.groups_in(tokens)

    def groups_in(self, length: int) -> int:
        return self.script[:length].count(self.engine.tokenizer.seg_token_ids[-1])

    def requests(self, count: int, lengths: tuple[float, ...] = (1.0,)) -> list[BatchRequest]:
        """Fresh images every call, so no request finds its image in the feature cache. Request k's
        answer has lengths[k % len(lengths)] x tokens tokens."""
        eos = self.engine.tokenizer.eos_id
        out = []
        for index in range(count):
            instruction = INSTRUCTIONS[index % len(INSTRUCTIONS)]
            image = self.rng.integers(0, 256, size=(*self.image_hw, 3), dtype=np.uint8)
            hook = ScriptedTokens(self.script, len(self.engine.prompt_ids(instruction)), suppress=[eos])
            length = max(1, round(self.tokens * lengths[index % len(lengths)]))
            out.append(BatchRequest(image, instruction, length, logits_processor=hook))
        return out

    def check(self, result: object, length: int | None = None) -> SegmentationResult:
        length = self.tokens if length is None else length
        if not isinstance(result, SegmentationResult):
            raise RuntimeError(f"a request failed: {result!r}")
        if result.generated_tokens != length or len(result.targets) != self.groups_in(length):
            raise RuntimeError(f"expected {length} tokens / {self.groups_in(length)} targets, got "
                               f"{result.generated_tokens} / {len(result.targets)}")
        return result


def one_by_one(engine: PixelLMEngine, work: Workload, requests: list[BatchRequest]) -> tuple[float, list[float]]:
    """All arrive at t0, served in turn: (total s, latency s of each)."""
    engine.clear_cache()
    start = time.perf_counter()
    latencies = []
    for r in requests:
        work.check(engine.segment(r.image, r.instruction, r.max_new_tokens, logits_processor=r.logits_processor))
        latencies.append(time.perf_counter() - start)
    return latencies[-1], latencies


def batched(engine: PixelLMEngine, work: Workload, requests: list[BatchRequest]) -> tuple[float, list[float]]:
    engine.clear_cache()
    start = time.perf_counter()
    for outcome in engine.segment_batch(requests):
        work.check(outcome)
    total = time.perf_counter() - start
    return total, [total] * len(requests)  # equal answers: all end at the same step


def part1(engine: PixelLMEngine, baseline: PixelLMEngine, work: Workload, repeats: int) -> float:
    log(f"\n== Part 1: N requests arriving together, one by one vs one batch (median of {repeats}, interleaved) ==")
    log(f"{'N':>2} | {'one by one':>11} | {'batched':>9} | {'throughput':>10} | {'mean latency':>19} | "
        f"{'batched latency':>15}")
    log(f"{'':>2} | {'answers/s':>11} | {'answers/s':>9} | {'ratio':>10} | {'1-by-1 -> batched':>19} | "
        f"{'/ batch 1':>15}")
    single_s = None
    for count in CONCURRENCY:
        seq_runs, batch_runs = [], []
        for _ in range(repeats):
            seq_runs.append(one_by_one(baseline, work, work.requests(count)))
            batch_runs.append(batched(engine, work, work.requests(count)))
        seq_total, seq_lat = sorted(seq_runs)[(repeats - 1) // 2]
        batch_total, batch_lat = sorted(batch_runs)[(repeats - 1) // 2]
        if single_s is None:
            single_s = seq_total
        FIGURES[f"throughput_ratio_n{count}"] = seq_total / batch_total
        log(f"{count:>2} | {count / seq_total:>11.3f} | {count / batch_total:>9.3f} | {seq_total / batch_total:>9.2f}x | "
            f"{statistics.mean(seq_lat):>7.2f} s -> {statistics.mean(batch_lat):>5.2f} s | "
            f"{batch_total / single_s:>14.2f}x")
    assert single_s is not None
    return single_s


def part2(engine: PixelLMEngine, prompt_positions: int, repeats: int = 8) -> None:
    log("\n== Part 2: what a finished row costs (LLM decode step at B rows) ==")
    lm = engine.model.language_model
    device, dtype = engine.device, engine.model.dtype
    hidden = lm.config.hidden_size
    step_ms: dict[int, float] = {}
    growing_ms: dict[int, float] = {}
    with torch.inference_mode():
        for rows in CONCURRENCY:
            for growing, times_of in ((False, step_ms), (True, growing_ms)):
                cache = DynamicKVDecoder(lm, growing=growing)
                embeds = [torch.randn(prompt_positions, hidden, device=device, dtype=dtype) for _ in range(rows)]
                cache.prefill(embeds, [torch.ones(prompt_positions, device=device, dtype=torch.long)] * rows)
                tokens = torch.full((rows,), 5, dtype=torch.long, device=device)
                times = []
                for _ in range(repeats + 2):
                    sync(device)
                    start = time.perf_counter()
                    cache.step(tokens)
                    sync(device)
                    times.append(time.perf_counter() - start)
                times_of[rows] = statistics.median(times[2:]) * 1e3
                if rows == max(CONCURRENCY) and not growing:
                    sync(device)
                    start = time.perf_counter()
                    cache.keep(list(range(rows // 2)))
                    sync(device)
                    drop_ms = (time.perf_counter() - start) * 1e3
    FIGURES.update({f"step_ms_b{b}": t for b, t in step_ms.items()})
    line = ", ".join(f"B={b}: {t:.1f} ms" for b, t in step_ms.items())
    log(f"decode step ({prompt_positions} cached positions): {line}")
    log("the same step on a GrowingCache (written in place, no copy of the cache per token; engine/kv_cache.py): "
        + ", ".join(f"B={b}: {t:.1f} ms ({t / step_ms[b]:.2f}x)" for b, t in growing_ms.items()))
    if engine.decode_mode != "dynamic":  # the static batch decoder (a CUDA graph per row count on a GPU)
        static_ms: dict[int, float] = {}
        with torch.inference_mode():
            for rows in CONCURRENCY:
                decoder = engine.kv_decoder(prompt_positions + repeats + 4, rows=rows)
                embeds = [torch.randn(prompt_positions, hidden, device=device, dtype=dtype) for _ in range(rows)]
                decoder.prefill(embeds, [torch.ones(prompt_positions, device=device, dtype=torch.long)] * rows)
                tokens = torch.full((rows,), 5, dtype=torch.long, device=device)
                times = []
                for _ in range(repeats + 2):
                    sync(device)
                    start = time.perf_counter()
                    decoder.step(tokens)
                    sync(device)
                    times.append(time.perf_counter() - start)
                decoder.reset()
                static_ms[rows] = statistics.median(times[2:]) * 1e3
        log(f"the same step on the {engine.decode_mode} batch decoder: "
            + ", ".join(f"B={b}: {t:.2f} ms" for b, t in static_ms.items())
            + f"; step(B={max(CONCURRENCY)}) / step(1) = {static_ms[max(CONCURRENCY)] / static_ms[1]:.2f}x")
    big = max(CONCURRENCY)
    log(f"keeping {big // 2} finished rows of {big} masked costs {step_ms[big] - step_ms[big // 2]:.1f} ms on EVERY later "
        f"step (t({big}) - t({big // 2})); dropping them from the cache costs {drop_ms:.1f} ms once -> rows are dropped")
    log(f"per answer-token: " + ", ".join(f"B={b}: {t / b:.1f} ms" for b, t in step_ms.items())
        + f"; step(B={big // 2}) / step(1) = {step_ms[big // 2] / step_ms[1]:.2f}x")

    if device.type == "cpu":
        # Every linear weight of the decoder layers, as one step reads them (from DRAM: they are far
        # larger than the caches), through the two ways of laying out the same product.
        weights = [m.weight for m in lm.model.layers.modules() if isinstance(m, torch.nn.Linear)]
        cells = []
        with torch.inference_mode():
            for rows in CONCURRENCY:
                inputs = {w.shape[1]: torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights}
                result = {}
                for name, fn in (("F.linear", lambda x, w: F.linear(x, w)), ("(W x^T)^T", lambda x, w: torch.mm(w, x.T).T)):
                    times = []
                    for _ in range(5):
                        start = time.perf_counter()
                        for w in weights:
                            fn(inputs[w.shape[1]], w)
                        times.append(time.perf_counter() - start)
                    result[name] = statistics.median(times[1:]) * 1e3
                cells.append(f"M={rows}: {result['F.linear']:.1f} / {result['(W x^T)^T']:.1f} ms")
        log(f"the decoder layers' {len(weights)} {weights[0].dtype} linear layers alone at M rows, "
            f"F.linear (what nn.Linear runs) / (W x^T)^T: " + "; ".join(cells))


def part3(engine: PixelLMEngine, baseline: PixelLMEngine, work: Workload, single_s: float, arrivals: int, load: float,
          max_batch: int, lengths: tuple[float, ...]) -> None:
    interval = single_s / load
    shape = "all of " + str(work.tokens) if lengths == (1.0,) else "/".join(str(round(work.tokens * x)) for x in lengths)
    log(f"\n== Part 3: {arrivals} requests, one every {interval:.2f} s (T1 / {load:g}), answers of {shape} tokens, "
        f"max_batch {max_batch} ==")
    log("static: a new batch starts when the current one has ended; continuous: arrivals join the running batch "
        "at the next step; both hand out each answer as soon as it ends (BatchSession)")
    offsets = [k * interval for k in range(arrivals)]
    policies: dict[str, Callable[[list[BatchRequest], list[float]], list[float]]] = {
        "one by one": lambda rq, due: serve_one_by_one(baseline, work, rq, due),
        "static batches": lambda rq, due: serve_session(engine, work, rq, due, max_batch, join=False),
        "continuous batching": lambda rq, due: serve_session(engine, work, rq, due, max_batch, join=True),
    }
    summary = {}
    log(f"{'policy':<20} | {'mean latency':>12} | {'p90':>7} | {'max':>7} | {'answers/s':>9}")
    for name, serve in policies.items():
        requests = work.requests(arrivals, lengths)
        engine.clear_cache()
        start = time.perf_counter()
        due = [start + offset for offset in offsets]
        done = serve(requests, due)
        latency = [d - a for d, a in zip(done, due)]
        throughput = arrivals / (max(done) - start)
        summary[name] = (statistics.mean(latency), float(np.percentile(latency, 90)), throughput)
        log(f"{name:<20} | {statistics.mean(latency):>10.2f} s | {summary[name][1]:>5.2f} s | "
            f"{max(latency):>5.2f} s | {throughput:>9.3f}")
    cont, static = summary["continuous batching"], summary["static batches"]
    FIGURES.update({"continuous_over_static_mean_latency": cont[0] / static[0],
                    "continuous_over_static_throughput": cont[2] / static[2]})
    log(f"continuous / static: mean latency {cont[0] / static[0]:.2f}x, p90 {cont[1] / static[1]:.2f}x, "
        f"throughput {cont[2] / static[2]:.2f}x")


def wait_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def serve_one_by_one(engine: PixelLMEngine, work: Workload, requests: list[BatchRequest], due: list[float]) -> list[float]:
    done = []
    for request, moment in zip(requests, due):
        wait_until(moment)
        work.check(engine.segment(request.image, request.instruction, request.max_new_tokens,
                                  logits_processor=request.logits_processor), request.max_new_tokens)
        done.append(time.perf_counter())
    return done


def serve_session(engine: PixelLMEngine, work: Workload, requests: list[BatchRequest], due: list[float],
                  max_batch: int, join: bool) -> list[float]:
    """join=False: requests are only taken while the session is idle (static batches)."""
    done = [0.0] * len(requests)
    session = engine.batch_session(max_batch=max_batch, static=not join)
    index_of: dict[int, int] = {}
    next_index = 0
    while next_index < len(requests) or not session.idle:
        now = time.perf_counter()
        if join or session.idle:
            while next_index < len(requests) and due[next_index] <= now and session.free_slots:
                index_of[session.add(requests[next_index])] = next_index
                next_index += 1
        if session.idle:
            wait_until(due[next_index])
            continue
        for ticket, outcome in session.step():
            index = index_of[ticket]
            work.check(outcome, requests[index].max_new_tokens)
            done[index] = time.perf_counter()
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="= --size 7b --device cuda")
    parser.add_argument("--size", choices=("mid", "7b"), default="mid", help="mid: the CPU model; 7b: released shapes, bf16")
    parser.add_argument("--tiny", action="store_true", help="with --size 7b: tiny config on the CPU (checks the script)")
    parser.add_argument("--device", default=None, help="default: cpu (mid, --tiny), cuda (7b)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per answer (default 64 mid, 128 7b)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument("--arrivals", type=int, default=12, help="part 3: requests arriving one after another")
    parser.add_argument("--load", type=float, default=4.0, help="part 3: arrivals per single-answer time")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--mixed", action="store_true", help="part 3: answers of 0.5x / 1x / 1.5x --tokens, in turn")
    parser.add_argument("--baseline-mode", default=None,
                        help="decode_mode of the one-by-one baseline (default: dynamic; cuda_graph with --gpu)")
    parser.add_argument("--batch-mode", default=None,
                        help="decode_mode of the batched engine: dynamic, or static / cuda_graph / compiled for "
                             "static batches on a static decoder (default: dynamic; cuda_graph with --gpu)")
    parser.add_argument("--parts", default="1,2,3")
    parser.add_argument("--repeats", type=int, default=2, help="part 1: runs per N (the lower median is printed)")
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: float32 mid, bfloat16 7b)")
    parser.add_argument("--attention", default="sdpa", choices=("sdpa", "eager"),
                        help="the LLM's attention implementation, for both ways")
    add_smoke_argument(parser)
    args = parser.parse_args()
    if args.smoke:  # the GPU mode's code path (static batches) on the CPU, tiny, every part
        args.size, args.tiny, args.tokens, args.repeats, args.arrivals, args.max_batch = "7b", True, 12, 1, 3, 2
        args.batch_mode, args.baseline_mode = args.batch_mode or "static", args.baseline_mode or "static"
    if args.gpu:
        args.size = "7b"
    graph_default = "cuda_graph" if args.gpu else "dynamic"
    args.baseline_mode = args.baseline_mode or graph_default
    args.batch_mode = args.batch_mode or graph_default
    seven_b = args.size == "7b"
    device = torch.device(args.device or ("cuda" if seven_b and not args.tiny else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if seven_b else torch.float32)
    tokens = args.tokens or (128 if seven_b else 64)
    torch.set_num_threads(args.threads)

    tokenizer = bench_tokenizer()
    if seven_b:
        config = bench_config("tiny" if args.tiny else "7b", tokenizer)
        if args.tiny:
            tokens = min(tokens, 32)
    else:
        config = mid_size_config(len(tokenizer))
    model = build_random_model(config, device, dtype, seed=0)
    model.language_model.set_attn_implementation(args.attention)
    engine = PixelLMEngine(model, tokenizer, max_new_tokens=tokens, decode_mode=args.batch_mode)
    engine.static_decoders_kept = len(CONCURRENCY)  # one static batch decoder (and graph) per N, kept
    baseline = PixelLMEngine(model, tokenizer, max_new_tokens=tokens, decode_mode=args.baseline_mode)
    llm_params = sum(p.numel() for p in model.language_model.parameters())
    llm_bytes = sum(p.numel() * p.element_size() for p in model.language_model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    work = Workload(engine, tokens, (480, 640))
    prompt_positions = len(engine.prompt_ids(INSTRUCTIONS[0])) - 1 + config.image_token_len
    log(f"{name}; torch {torch.__version__}; {'7B shapes' if seven_b and not args.tiny else args.size}"
        f"{' (tiny)' if args.tiny else ''} in {dtype}: LLM {llm_params / 1e6:.1f} M parameters ({llm_bytes / 1e9:.2f} GB), "
        f"whole model {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M")
    log(f"answers of {tokens} tokens ({work.groups} seg groups), 640x480 images, prompts of "
        f"{min(len(engine.prompt_ids(i)) for i in INSTRUCTIONS) - 1 + config.image_token_len}-"
        f"{max(len(engine.prompt_ids(i)) for i in INSTRUCTIONS) - 1 + config.image_token_len} positions; "
        f"one-by-one baseline decode_mode {args.baseline_mode}, batches {args.batch_mode}; {args.attention} attention")

    start = time.perf_counter()  # warm-up: kernels, allocator, graph capture of the static decoders
    one_by_one(baseline, work, work.requests(1))
    for count in CONCURRENCY if args.batch_mode != "dynamic" else (2,):
        batched(engine, work, work.requests(count))
    log(f"warm-up {time.perf_counter() - start:.1f} s")

    parts = {int(p) for p in args.parts.split(",")}
    single_s = None
    if 1 in parts:
        single_s = part1(engine, baseline, work, args.repeats)
    if 2 in parts:
        part2(engine, prompt_positions)
    if 3 in parts:
        if single_s is None:
            single_s, _ = one_by_one(baseline, work, work.requests(1))
        part3(engine, baseline, work, single_s, args.arrivals, args.load, args.max_batch,
              (0.5, 1.0, 1.5) if args.mixed else (1.0,))
    if device.type == "cuda":
        log(f"peak memory {torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB")
    report(FIGURES)


if __name__ == "__main__":
    main()
