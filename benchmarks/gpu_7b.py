"""PixelLM-7B / 13B-shaped engine on one GPU, in every decode mode and weight format, within a time budget.

No download: the networks have the released shapes (``PixelLMConfig.released_7b()`` /
``released_13b()``: CLIP-L/14 at 448, LLaMA, seg codebook, pixel decoder) with random weights,
built directly in bf16 on the GPU. Quantised modes take those same weights through the loader's
own last step (``finish_loading``: fuse, quantise layer by layer on the GPU, move) after the bf16
model has left the GPU, so their peak memory is their own. A small sentencepiece tokenizer is
trained on the spot; every generated token is scripted through the engine's logits hook (a
forced answer with seg groups, end-of-sequence suppressed), so each query generates exactly
``--tokens`` tokens and decodes its masks, while the model does all of its real work.

Per plan row (``SIZE:MODE``, modes as in gpu_common.py: ``[LOAD_IN/]DECODE[+fused]``):
time to first token (vision tower + prefill), decode ms/token and its ratio to the bandwidth
bound (bytes the step must read / GPU bandwidth; "own" counts the mode's stored weight bytes,
"bf16" the bf16 weights', so < 1x there means faster than bf16 can ever be), the whole query
(new image; cached image), peak memory, and agreement with the size's first row (bf16 eager for
7B) on a fixed set of images and instructions: teacher-forced top-1 agreement (the model's own
argmax at every scripted position) and the IoU of every target's mask. With random weights the
logits are nearly flat, so the agreement of quantised modes is a lower bound of what a trained
checkpoint gives (its distributions are peaked).

``release:SIZE`` is the release check: an engine is built, answers once and is released the way
the node's deactivate does it (``PixelLMEngine.release``); allocated / reserved / driver-free
memory before and after show a leak as memory still held.

Rows run in plan order while the budget allows (each row's cost is estimated first, compile
times learned as they come); the JSON and Markdown reports are rewritten after every row, so a
run stopped from outside keeps what it measured.

    python benchmarks/gpu_7b.py --out out/gpu             # the default GPU plan, 350 s budget
    python benchmarks/gpu_7b.py --plan 7b:dynamic,7b:compiled+fused --budget-s 200
    python benchmarks/gpu_7b.py --tiny --out out/gpu_tiny  # CPU run of this script (tiny sizes)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_common import (  # noqa: E402
    IMAGE_HW,
    INSTRUCTIONS,
    ModelSource,
    Mode,
    bandwidth,
    bench_config,
    bench_tokenizer,
    bf16_decode_bytes_per_token,
    decode_bytes_per_token,
    forget_compiled,
    log,
    scripted_answer,
    stored_bytes,
    sync,
)

from smoke import add_smoke_argument, report  # noqa: E402

from pixellm_ros.engine import EngineError, PixelLMEngine  # noqa: E402
from pixellm_ros.engine.forcing import ScriptedTokens  # noqa: E402
from pixellm_ros.model.load_options import LoadOptionError  # noqa: E402

# The device plan, most wanted first: the budget cuts from the end.
GPU_PLAN = (
    "7b:dynamic",  # eager bf16: the reference of the agreement columns
    "7b:compiled+fused",  # the candidate default GPU mode
    "7b:cuda_graph+fused",
    "release:7b",
    "7b:int4_weight/cuda_graph+fused",
    "7b:4bit/cuda_graph+fused|4bit/dynamic+fused",
    "13b:cuda_graph+fused",
    "7b:int8_weight/compiled+fused",  # int8 weight-only is fast only compiled (dequantisation fused)
    "7b:8bit/dynamic+fused",  # LLM.int8's outlier split syncs with the host: no graph
    "13b:compiled+fused",
    "7b:cuda_graph",
    "7b:compiled",
    "7b:int4_weight/compiled+fused",
    "7b:static",
    "7b:dynamic+fused",
    "13b:int4_weight/cuda_graph+fused",
)
# The CPU plan of --tiny: every code path once (the refusals included), at tiny sizes.
SMOKE_PLAN = ("tiny:dynamic,tiny:static+fused,tiny:int4_weight/static+fused,tiny:cuda_graph,release:tiny,"
              "tiny-b:static")
CPU_PLAN = (
    "tiny:dynamic",
    "tiny:static+fused",
    "tiny:compiled+fused",
    "tiny:int8_weight/static+fused",
    "tiny:int4_weight/static+fused",
    "tiny:4bit/cuda_graph+fused|4bit/dynamic",
    "tiny:cuda_graph",
    "release:tiny",
    "tiny-b:static+fused",
    "tiny:static",
    "tiny:int8_weight/dynamic",
)
# Seconds a row is expected to take (7B; 13B x1.6) before anything was measured; compiling and
# quantising are added on top. On the CPU (tiny sizes) the small numbers.
ROW_SECONDS = {"cuda": {"dynamic": 20, "static": 20, "cuda_graph": 10, "compiled": 10},
               "cpu": {"dynamic": 4, "static": 4, "cuda_graph": 4, "compiled": 4}}
COMPILE_SECONDS = {"cuda": 100.0, "cpu": 60.0}
QUANTISE_SECONDS = {"cuda": 15.0, "cpu": 2.0}
SLOW_QUERY_MS = 4000.0  # a mode slower than this per query is measured with fewer queries
SIZE_FACTOR = {"13b": 1.6}


@dataclass
class PlanRow:
    size: str
    modes: tuple[Mode, ...]  # alternatives: the next runs only if the one before failed
    release: bool = False

    @classmethod
    def parse(cls, spec: str) -> PlanRow:
        head, _, rest = spec.strip().partition(":")
        if head == "release":
            return cls(rest, (), release=True)
        return cls(head, tuple(Mode.parse(m) for m in rest.split("|")))

    @property
    def name(self) -> str:
        return f"release:{self.size}" if self.release else f"{self.size}:" + "|".join(m.name for m in self.modes)


class TopChoices:
    """A logits hook around the script that records the model's own argmax at every step."""

    def __init__(self, script: ScriptedTokens) -> None:
        self.script = script
        self.choices: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.choices.append(scores.argmax(dim=-1))
        return self.script(input_ids, scores)

    def tokens(self) -> list[int]:
        return torch.cat(self.choices).tolist() if self.choices else []


@dataclass
class Sample:
    """One query of the agreement set: its own top-1 choices, text and masks."""

    choices: list[int]
    text: str
    masks: list[np.ndarray]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def agreement(reference: list[Sample], ours: list[Sample]) -> dict:
    top1 = [np.mean(np.equal(r.choices, o.choices)) for r, o in zip(reference, ours) if len(r.choices) == len(o.choices)]
    ious = [mask_iou(a, b) for r, o in zip(reference, ours) for a, b in zip(r.masks, o.masks)]
    return {
        "pairs": len(ours),
        "top1": float(np.mean(top1)) if top1 else None,
        "top1_min": float(np.min(top1)) if top1 else None,
        "mask_iou_mean": float(np.mean(ious)) if ious else None,
        "mask_iou_min": float(np.min(ious)) if ious else None,
        "same_text": all(r.text == o.text for r, o in zip(reference, ours)),
        "mask_area_mean": float(np.mean([m.mean() for o in ours for m in o.masks])) if ious else None,
    }


def memory(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    free, total = torch.cuda.mem_get_info(device)
    return {"allocated_gb": torch.cuda.memory_allocated(device) / 1e9, "reserved_gb": torch.cuda.memory_reserved(device) / 1e9,
            "driver_free_gb": free / 1e9, "total_gb": total / 1e9}


def memory_line(state: dict) -> str:
    if not state:
        return "(CPU: no device memory to show)"
    return (f"allocated {state['allocated_gb']:.2f} GB, reserved {state['reserved_gb']:.2f} GB, "
            f"driver free {state['driver_free_gb']:.1f} / {state['total_gb']:.1f} GB")


class Bench:
    """The run: plan, budget, models per size, reports."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
        self.kind = "cuda" if self.device.type == "cuda" else "cpu"
        self.dtype = torch.bfloat16
        self.start = time.perf_counter()
        self.tokenizer = bench_tokenizer()
        self.script = scripted_answer(self.tokenizer, args.tokens)
        rng = np.random.default_rng(0)
        self.pairs = [(rng.integers(0, 256, size=(*IMAGE_HW, 3), dtype=np.uint8), INSTRUCTIONS[k % len(INSTRUCTIONS)])
                      for k in range(args.pairs)]
        self.sources: dict[str, ModelSource] = {}
        self.references: dict[str, tuple[str, list[Sample]]] = {}
        self.compile_s = COMPILE_SECONDS[self.kind]
        self.compiles: list[float] = []
        self.rows: list[dict] = []
        self.bandwidth, self.bandwidth_source, self.measured_bandwidth = bandwidth(self.device)
        self.meta = self._meta()

    # -------------------------------------------------------------- plan
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def estimate(self, row: PlanRow) -> float:
        if row.release:
            return 15.0 if self.kind == "cuda" else 3.0
        mode = row.modes[0]
        seconds = ROW_SECONDS[self.kind][mode.decode] * SIZE_FACTOR.get(row.size, 1.0)
        if mode.decode == "compiled":
            seconds += self.compile_s * SIZE_FACTOR.get(row.size, 1.0)
        if mode.load_in is not None:
            seconds += QUANTISE_SECONDS[self.kind]
        if mode.load_in == "8bit" and self.kind == "cuda":
            seconds += 30  # LLM.int8 at batch 1 decodes several times slower than bf16
        return seconds

    def source(self, size: str) -> ModelSource:
        for other, source in self.sources.items():
            if other != size and source.model is not None:
                source.park()
        if size not in self.sources:
            self.sources[size] = ModelSource(size, bench_config(size, self.tokenizer), self.device, self.dtype)
        return self.sources[size]

    def run(self, plan: list[PlanRow]) -> None:
        for row in plan:
            needed, left = self.estimate(row), self.args.budget_s - self.elapsed()
            if needed > left:
                self.record({"row": row.name, "size": row.size, "status": "skipped",
                             "reason": f"budget: needs ~{needed:.0f} s, {max(left, 0):.0f} s left"})
                continue
            if row.release:
                self.record(self.release_check(row.size))
                continue
            for index, mode in enumerate(row.modes):
                result = self.run_mode(row.size, mode)
                self.record(result)
                if result["status"] != "failed" or index == len(row.modes) - 1:
                    break
        for source in self.sources.values():
            source.drop()

    def record(self, result: dict) -> None:
        result["at_s"] = round(self.elapsed(), 1)
        self.rows.append(result)
        status = result["status"]
        if status == "ok" and "decode_ms_per_token" in result:
            log(f"[{result['row']}] {summary_line(result)}")
        elif status != "ok":
            log(f"[{result['row']}] {status}: {result.get('reason', '')}")
        if self.args.out:
            write_reports(Path(self.args.out), self.meta, self.rows, self.args.tokens)

    # -------------------------------------------------------------- one mode
    def run_mode(self, size: str, mode: Mode) -> dict:
        row = {"row": f"{size}:{mode.name}", "size": size, "mode": mode.name}
        start = time.perf_counter()
        engine = None
        try:
            source = self.source(size)
            model = source.model_for(mode)
            try:
                engine = PixelLMEngine(model, self.tokenizer, max_new_tokens=self.args.tokens, decode_mode=mode.decode)
            except EngineError as exc:  # a decode mode this device has not (cuda_graph on the CPU)
                raise LoadOptionError(str(exc)) from exc
            row.update(self.measure(engine, source, mode))
            row["status"] = "ok"
            row["build_s"] = round(source.built_s, 1)
        except (LoadOptionError, ImportError) as exc:
            row.update(status="refused", reason=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # report and go on with the next row
            row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
            log(traceback.format_exc(limit=6))
        finally:
            if engine is not None:
                engine.clear_cache()
            del engine
            forget_compiled()
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        row["row_s"] = round(time.perf_counter() - start, 1)
        return row

    def query(self, engine: PixelLMEngine, pair: int, record: bool = False) -> tuple[object, TopChoices | None]:
        image, instruction = self.pairs[pair]
        script = ScriptedTokens(self.script, len(engine.prompt_ids(instruction)), suppress=[self.tokenizer.eos_id])
        hook = TopChoices(script) if record else None
        result = engine.segment(image, instruction, logits_processor=hook or script)
        if result.generated_tokens != self.args.tokens:
            raise RuntimeError(f"generated {result.generated_tokens} tokens, not {self.args.tokens}")
        return result, hook

    def measure(self, engine: PixelLMEngine, source: ModelSource, mode: Mode) -> dict:
        model, device, tokens = engine.model, self.device, self.args.tokens
        start = time.perf_counter()
        first_result, first_hook = self.query(engine, 0, record=True)  # warm-up: kernels, capture, compilation
        sync(device)
        warmup_s = time.perf_counter() - start
        if mode.decode == "compiled":  # later compiled rows are expected to take as long as the longest yet
            self.compiles.append(warmup_s / SIZE_FACTOR.get(source.size, 1.0))
            self.compile_s = 1.1 * max(self.compiles)
        repeats, pairs = self.args.repeats, len(self.pairs)
        if first_result.timings["total_ms"] > SLOW_QUERY_MS:
            repeats, pairs = 1, min(pairs, 2)
        first, cached = [], []
        for _ in range(repeats):
            engine.clear_cache()
            first.append(self.query(engine, 0)[0])
            cached.append(self.query(engine, 0)[0])
        samples = [sample_of(first_result, first_hook)]
        for pair in range(1, pairs):
            result, hook = self.query(engine, pair, record=True)
            samples.append(sample_of(result, hook))

        config = model.config
        spliced_prompt = len(engine.prompt_ids(INSTRUCTIONS[0])) - 1 + config.image_token_len
        kv_positions = spliced_prompt + tokens / 2
        own_bound_ms = decode_bytes_per_token(model, kv_positions) / self.bandwidth * 1e3
        bf16_bound_ms = bf16_decode_bytes_per_token(config, kv_positions) / self.bandwidth * 1e3
        tokens_per_s = median(first + cached, "decode_tokens_per_s")
        decode_ms = 1e3 / tokens_per_s
        lm = model.language_model
        out = {
            "warmup_s": round(warmup_s, 1),
            "prompt_positions": spliced_prompt,
            "tokens": tokens,
            "targets": len(first[0].targets),
            "repeats": repeats,
            "first_token_ms": median(first, "first_token_ms"),
            "vision_ms": median(first, "vision_ms"),
            "prefill_ms": median(first, "prefill_ms"),
            "cached_first_token_ms": median(cached, "first_token_ms"),
            "decode_ms_per_token": decode_ms,
            "tokens_per_s": tokens_per_s,
            "bound_ms": own_bound_ms,
            "ratio_to_bound": decode_ms / own_bound_ms,
            "bf16_bound_ms": bf16_bound_ms,
            "ratio_to_bf16_bound": decode_ms / bf16_bound_ms,
            "query_ms": median(first, "total_ms"),
            "cached_query_ms": median(cached, "total_ms"),
            "mask_decoding_ms": median(first, "decoding_ms"),
            "llm_weights_gb": sum(stored_bytes(p) for p in lm.parameters()) / 1e9,
            "peak_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
        }
        reference = self.references.get(source.size)
        if reference is None:
            self.references[source.size] = (mode.name, samples)
            out["agreement"] = {"reference": mode.name, "pairs": len(samples), "is_reference": True}
        else:
            out["agreement"] = {"reference": reference[0], **agreement(reference[1][: len(samples)], samples)}
        return out

    # -------------------------------------------------------------- release
    def release_check(self, size: str) -> dict:
        """Build, answer once on the graph path (static on the CPU), release as the node's deactivate does."""
        row = {"row": f"release:{size}", "size": size, "status": "ok"}
        try:
            source = self.source(size)
            source.drop()
            states = {"before_build": memory(self.device)}
            decode = "cuda_graph" if self.device.type == "cuda" else "static"
            engine = PixelLMEngine(source.detached_bf16(), self.tokenizer, max_new_tokens=self.args.tokens, decode_mode=decode)
            self.query(engine, 0)
            sync(self.device)
            states["after_query"] = memory(self.device)
            engine.release()
            states["after_release"] = memory(self.device)
            row["memory"] = states
            for name, state in states.items():
                log(f"[release:{size}] {name:13s}: {memory_line(state)}")
        except Exception as exc:  # noqa: BLE001
            row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        return row

    def _meta(self) -> dict:
        def version(name: str) -> str | None:
            try:
                return __import__(name).__version__
            except Exception:  # noqa: BLE001 - absent or broken: say so
                return None

        import transformers

        on_cuda = self.device.type == "cuda"
        return {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "device": torch.cuda.get_device_name(self.device) if on_cuda else "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "torchao": version("torchao"), "bitsandbytes": version("bitsandbytes"),
            "bandwidth_tb_s": self.bandwidth / 1e12, "bandwidth_source": self.bandwidth_source,
            "measured_copy_tb_s": self.measured_bandwidth / 1e12,
            "tokens": self.args.tokens, "repeats": self.args.repeats, "pairs": len(self.pairs),
            "budget_s": self.args.budget_s, "image_hw": IMAGE_HW, "instructions": INSTRUCTIONS,
        }


def sample_of(result: object, hook: TopChoices | None) -> Sample:
    return Sample(choices=hook.tokens() if hook else [], text=result.text, masks=[t.mask for t in result.targets])


def median(results: list, key: str) -> float:
    return statistics.median(r.timings[key] for r in results)


# ------------------------------------------------------------------------------------ reports
def summary_line(r: dict) -> str:
    line = (f"first token {r['first_token_ms']:.1f} ms (vision {r['vision_ms']:.1f} + prefill {r['prefill_ms']:.1f}); "
            f"decode {r['decode_ms_per_token']:.2f} ms/token = {r['ratio_to_bound']:.2f}x own bound "
            f"({r['ratio_to_bf16_bound']:.2f}x bf16 bound); query {r['query_ms'] / 1e3:.2f} s, {r['targets']} targets; "
            f"warm-up {r['warmup_s']:.1f} s")
    if r.get("peak_gb") is not None:
        line += f"; peak {r['peak_gb']:.2f} GB"
    agree = r.get("agreement", {})
    if agree.get("top1") is not None:
        line += (f"; vs {agree['reference']}: top-1 {agree['top1']:.1%}, mask IoU {agree['mask_iou_mean']:.3f} "
                 f"(min {agree['mask_iou_min']:.3f})")
    return line


def markdown(meta: dict, rows: list[dict], tokens: int) -> str:
    lines = [
        f"# gpu_7b.py on {meta['device']} ({meta['date']})",
        "",
        f"torch {meta['torch']} (CUDA {meta['cuda']}), transformers {meta['transformers']}, torchao {meta['torchao']}, "
        f"bitsandbytes {meta['bitsandbytes']}; random weights (7b / 13b: the released shapes), bf16 unless said; "
        f"a {meta['image_hw'][1]}x{meta['image_hw'][0]} image, {tokens} scripted tokens; bound = bytes read per token / "
        f"{meta['bandwidth_tb_s']:.2f} TB/s ({meta['bandwidth_source']}; measured copy {meta['measured_copy_tb_s']:.2f} TB/s). "
        f"Agreement: teacher-forced top-1 and mask IoU over {meta['pairs']} fixed image/instruction pairs against the "
        "size's reference row (random weights: a lower bound for a trained checkpoint).",
        "",
        "| model, mode | first token | decode | ours / bound (own bytes) | ours / bf16 bound | query "
        f"({tokens} tokens) | LLM weights | peak memory | top-1 agreement | mask IoU mean / min | warm-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["status"] != "ok" or "decode_ms_per_token" not in r:
            continue
        agree = r.get("agreement", {})
        if agree.get("is_reference"):
            top1, iou = "reference", "reference"
        else:
            top1 = f"{agree['top1']:.1%}" if agree.get("top1") is not None else "n/a"
            iou = (f"{agree['mask_iou_mean']:.3f} / {agree['mask_iou_min']:.3f}"
                   if agree.get("mask_iou_mean") is not None else "n/a")
        peak = f"{r['peak_gb']:.1f} GB" if r.get("peak_gb") is not None else "n/a"
        lines.append(
            f"| {r['size']}, {r['mode']} | {r['first_token_ms']:.0f} ms | {r['decode_ms_per_token']:.2f} ms/token | "
            f"{r['ratio_to_bound']:.2f}x | {r['ratio_to_bf16_bound']:.2f}x | {r['query_ms'] / 1e3:.2f} s, "
            f"{r['targets']} targets | {size_text(r['llm_weights_gb'])} | {peak} | {top1} | {iou} | {r['warmup_s']:.0f} s |"
        )
    others = [r for r in rows if r["status"] not in ("ok",) or r["row"].startswith("release:")]
    if others:
        lines += ["", "Other rows:", ""]
        for r in others:
            if r["row"].startswith("release:") and r["status"] == "ok":
                states = r.get("memory", {})
                text = "; ".join(f"{k} {memory_line(v)}" for k, v in states.items())
                lines.append(f"- {r['row']}: {text}")
            else:
                lines.append(f"- {r['row']}: {r['status']}: {r.get('reason', '')}")
    return "\n".join(lines) + "\n"


def size_text(gigabytes: float) -> str:
    return f"{gigabytes:.2f} GB" if gigabytes >= 0.1 else f"{gigabytes * 1e3:.2f} MB"


def write_reports(out: Path, meta: dict, rows: list[dict], tokens: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_7b.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
    (out / "gpu_7b.md").write_text(markdown(meta, rows, tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU: checks the script itself")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    parser.add_argument("--plan", default=None, help="comma list of SIZE:MODE[|MODE] and release:SIZE rows "
                                                     "(default: GPU_PLAN, CPU_PLAN with --tiny)")
    parser.add_argument("--tokens", type=int, default=128, help="generated tokens per query")
    parser.add_argument("--repeats", type=int, default=1, help="timed (new image, cached image) query pairs per row")
    parser.add_argument("--pairs", type=int, default=3, help="image/instruction pairs of the agreement set")
    parser.add_argument("--budget-s", type=float, default=None, help="stop starting rows after this (default 350; 600 --tiny)")
    parser.add_argument("--out", default=None, help="folder for gpu_7b.json and gpu_7b.md")
    add_smoke_argument(parser)
    args = parser.parse_args()
    if args.smoke:  # every kind of row on the CPU: eager, static + fused, refusals, a release, a second size
        args.tiny, args.tokens, args.pairs, args.repeats = True, 24, 2, 1
        args.plan = args.plan or SMOKE_PLAN
    args.budget_s = args.budget_s if args.budget_s is not None else (600.0 if args.tiny else 350.0)
    plan = [PlanRow.parse(spec) for spec in (args.plan.split(",") if args.plan else (CPU_PLAN if args.tiny else GPU_PLAN))]

    bench = Bench(args)
    meta = bench.meta
    log(f"torch {meta['torch']}, transformers {meta['transformers']}, torchao {meta['torchao']}, bitsandbytes "
        f"{meta['bitsandbytes']}, device {meta['device']}; bandwidth {meta['bandwidth_tb_s']:.2f} TB/s "
        f"({meta['bandwidth_source']}; measured copy {meta['measured_copy_tb_s']:.2f} TB/s); budget {args.budget_s:.0f} s")
    log("plan: " + ", ".join(row.name for row in plan))
    bench.run(plan)
    log(f"done in {bench.elapsed():.0f} s\n")
    print(markdown(meta, bench.rows, args.tokens), flush=True)
    report({row["row"]: {key: row.get(key) for key in ("status", "decode_ms_per_token", "first_token_ms")}
            for row in bench.rows})


if __name__ == "__main__":
    main()
