"""torch.profiler over the one-token decode step of each decode mode: where a token's time goes.

The step profiled is the engine's own (gpu_common.ModelSource builds the model; the KV decoder
``engine.kv_decoder`` gives for the mode: dynamic, static or CUDA graph, with the engine's cache
size), after a real prefill of the benchmark's prompt and ``--context`` decoded tokens, so the
attention reads a mid-answer cache. Per mode it reports

- the step's wall time without the profiler, and under it: device kernel time per token and the
  device's busy share (kernel time / wall time: what is left is launch overhead and host work);
- kernels per token (device-side launches, graph replays included), and host launch calls per
  token (cudaLaunchKernel and friends; one cudaGraphLaunch for a captured step); on the CPU the
  aten ops per token (all, and top-level ones dispatched from Python);
- the top kernels (or CPU ops) by self time, per token;
- the time per decoder layer, from record_function ranges around each layer (and lm_head and
  the final norm), where the step runs eagerly (dynamic, static). A captured or compiled step
  runs no Python per layer: there the table gives device time per step / layers instead.

One step is profiled alone (its kernel count is exact), then ``--steps`` steps (the tables are
their mean). Written to ``--out``: profile_decode.md (the summary), profile_decode_raw.txt
(profiler tables, every layer) and profile_decode.json.

    python benchmarks/profile_decode.py --out out/profile            # GPU: the default modes at 7B
    python benchmarks/profile_decode.py --modes compiled+fused,int4_weight/cuda_graph+fused
    python benchmarks/profile_decode.py --tiny --out out/profile_tiny  # CPU, tiny model
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_common import (  # noqa: E402
    IMAGE_HW,
    INSTRUCTIONS,
    ModelSource,
    Mode,
    bench_config,
    bench_tokenizer,
    forget_compiled,
    log,
    scripted_answer,
    sync,
)

from smoke import add_smoke_argument, report  # noqa: E402

from pixellm_ros.engine import EngineError, PixelLMEngine  # noqa: E402
from pixellm_ros.model.load_options import LoadOptionError  # noqa: E402

GPU_MODES = ("dynamic", "static", "cuda_graph", "cuda_graph+fused", "compiled", "compiled+fused")
CPU_MODES = ("dynamic", "static", "static+fused", "compiled+fused", "int8_weight/static+fused", "cuda_graph")
STEP_RANGE = "decode_step"
HOST_LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch",
                 "cudaMemcpyAsync", "cudaMemsetAsync")
TOP = 12


class LayerRanges:
    """record_function ranges around every decoder layer, the final norm and lm_head (hooks)."""

    def __init__(self, lm: torch.nn.Module) -> None:
        self.names: list[str] = []
        self.handles = []
        self.open: dict[int, record_function] = {}
        parts = [(f"layer_{i:02d}", layer) for i, layer in enumerate(lm.model.layers)]
        parts += [("final_norm", lm.model.norm), ("lm_head", lm.lm_head)]
        for name, module in parts:
            self.names.append(name)
            self.handles.append(module.register_forward_pre_hook(self._enter(name)))
            self.handles.append(module.register_forward_hook(self._exit()))

    def _enter(self, name: str):  # type: ignore[no-untyped-def]
        def hook(module: torch.nn.Module, _args: object) -> None:
            scope = record_function(name)
            scope.__enter__()
            self.open[id(module)] = scope

        return hook

    def _exit(self):  # type: ignore[no-untyped-def]
        def hook(module: torch.nn.Module, _args: object, _output: object) -> None:
            self.open.pop(id(module)).__exit__(None, None, None)

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def device_time_us(event: object) -> float:
    """A range's device time (kernels it launched), across torch versions' attribute names."""
    for name in ("device_time_total", "cuda_time_total"):
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return 0.0


def summarise(prof: profile, steps: int, on_cuda: bool, layers: int, layer_names: list[str]) -> dict:
    """The per-token figures of one profiled run of ``steps`` decode steps."""
    events = list(prof.events())
    ranges = {n for n in layer_names} | {STEP_RANGE}
    kernels = [e for e in events if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
               and e.name not in ranges]
    step_events = [e for e in events if e.name == STEP_RANGE and e.device_type == DeviceType.CPU]
    wall_us = float(np.mean([e.time_range.elapsed_us() for e in step_events])) if step_events else 0.0
    out: dict = {"steps": steps, "wall_us_per_token": wall_us}

    cpu_ops = [e for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::")]

    def top_level(event: object) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return False
            parent = parent.cpu_parent
        return True

    out["aten_ops_per_token"] = len(cpu_ops) / steps
    out["top_level_aten_ops_per_token"] = sum(top_level(e) for e in cpu_ops) / steps
    launches = defaultdict(int)
    for e in events:
        if e.device_type == DeviceType.CPU and e.name in HOST_LAUNCHES:
            launches[e.name] += 1
    out["host_launch_calls_per_token"] = {k: v / steps for k, v in sorted(launches.items())}

    if on_cuda:
        busy = sum(e.time_range.elapsed_us() for e in kernels)
        out["kernels_per_token"] = len(kernels) / steps
        out["device_us_per_token"] = busy / steps
        out["device_busy_share"] = busy / steps / wall_us if wall_us else None
        by_name: dict[str, list[float]] = defaultdict(list)
        for e in kernels:
            by_name[e.name].append(e.time_range.elapsed_us())
        table = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))
        out["top"] = [{"name": name, "per_token": len(times) / steps, "us_per_token": sum(times) / steps,
                       "share": sum(times) / busy if busy else None} for name, times in table[:TOP]]
    else:
        averages = sorted(prof.key_averages(), key=lambda a: -a.self_cpu_time_total)
        total = sum(a.self_cpu_time_total for a in averages if a.key.startswith("aten::")) or 1.0
        out["top"] = [{"name": a.key, "per_token": a.count / steps, "us_per_token": a.self_cpu_time_total / steps,
                       "share": a.self_cpu_time_total / total}
                      for a in averages if a.key.startswith("aten::")][:TOP]

    layer_rows = []
    for name in layer_names:
        hits = [e for e in events if e.name == name and e.device_type == DeviceType.CPU]
        if hits:
            layer_rows.append({"name": name, "cpu_us": float(np.mean([e.time_range.elapsed_us() for e in hits])),
                               "device_us": float(np.mean([device_time_us(e) for e in hits])) if on_cuda else None})
    out["layers"] = layer_rows
    if not layer_rows and on_cuda and layers:
        out["device_us_per_layer_estimate"] = out["device_us_per_token"] / layers
    return out


def profile_steps(decoder: object, tokens: list[int], steps: int, on_cuda: bool, device: torch.device) -> profile:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    ids = [torch.tensor([token], device=device) for token in tokens]
    with profile(activities=activities) as prof:
        for k in range(steps):
            with record_function(STEP_RANGE):
                decoder.step(ids[k % len(ids)])
                sync(device)
    return prof


def run_mode(source: ModelSource, mode: Mode, tokenizer: object, args: argparse.Namespace, device: torch.device) -> dict:
    on_cuda = device.type == "cuda"
    model = source.model_for(mode)
    engine = PixelLMEngine(model, tokenizer, decode_mode=mode.decode)  # checks the mode against the device
    lm = model.language_model
    image = np.random.default_rng(0).integers(0, 256, size=(*IMAGE_HW, 3), dtype=np.uint8)
    prompt = engine.prompt_ids(INSTRUCTIONS[0])
    script = scripted_answer(tokenizer, args.context + args.steps + 8)
    with torch.inference_mode():
        encoded, _ = engine.encode_image(image)
        embeds, attention = model.embed_prompt(torch.tensor([prompt], device=device), encoded.features)
        length = embeds.shape[1]
        prompts = ([embeds[0]], [attention[0]])

        def step(decoder: object, token: int) -> None:
            decoder.step(torch.tensor([token], device=device))

        start = time.perf_counter()
        decoder = engine.kv_decoder(length + args.tokens)  # the graph modes capture (and compile) here
        decoder.prefill(*prompts)
        for k in range(3):  # and the CPU compiles at the first step
            step(decoder, script[k])
        sync(device)
        warmup_s = time.perf_counter() - start
        size = getattr(decoder, "max_len", None)
        decoder.reset()
        decoder.prefill(*prompts)
        position = length
        for k in range(args.context):
            step(decoder, script[k])
            position += 1
        sync(device)
        timed = script[args.context : args.context + args.steps]
        start = time.perf_counter()
        for token in timed:
            step(decoder, token)
        sync(device)
        unprofiled_us = (time.perf_counter() - start) / len(timed) * 1e6
        position += len(timed)

        eager = mode.decode in ("dynamic", "static")
        ranges = LayerRanges(lm) if eager else None
        layer_names = ranges.names if ranges else []
        try:
            single = profile_steps(decoder, timed, 1, on_cuda, device)
            several = profile_steps(decoder, timed, args.steps, on_cuda, device)
            position += 1  # where the profiled steps began
        finally:
            if ranges is not None:
                ranges.remove()
    layers = len(lm.model.layers)
    result = {
        "mode": mode.name, "size": source.size, "cache": "dynamic" if mode.decode == "dynamic" else f"static {size}",
        "prompt_positions": length, "kv_positions": position, "warmup_s": warmup_s, "unprofiled_us_per_token": unprofiled_us, "layers": layers,
        "one_step": summarise(single, 1, on_cuda, layers, layer_names),
        "steps": summarise(several, args.steps, on_cuda, layers, layer_names),
    }
    sort_key = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
    result["raw"] = several.key_averages().table(sort_by=sort_key, row_limit=40)
    return result


# ------------------------------------------------------------------------------------ reports
def fmt(value: float | None, pattern: str = "{:.1f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def markdown(meta: dict, results: list[dict], on_cuda: bool) -> str:
    unit = "kernels" if on_cuda else "aten ops"
    lines = [
        f"# Decode-step profile on {meta['device']} ({meta['date']})",
        "",
        f"torch {meta['torch']}, transformers {meta['transformers']}; size {meta['size']}, one token after a "
        f"{meta['prompt']}-position prompt and {meta['context']} decoded tokens; mean of {meta['steps']} profiled steps "
        "(the unprofiled column is the same steps' wall time without the profiler). Device busy = kernel time / "
        "wall time under the profiler: the rest is launch overhead and host work.",
        "",
        "| mode | ms/token unprofiled | ms/token profiled | device ms/token | device busy | "
        f"{unit}/token (one step) | host launch calls/token | top-level aten ops/token |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "error" in r:
            continue
        s, one = r["steps"], r["one_step"]
        launches = sum(s["host_launch_calls_per_token"].values())
        count = one.get("kernels_per_token") if on_cuda else one["aten_ops_per_token"]
        lines.append(
            f"| {r['mode']} | {r['unprofiled_us_per_token'] / 1e3:.2f} | {s['wall_us_per_token'] / 1e3:.2f} | "
            f"{fmt(s.get('device_us_per_token') and s['device_us_per_token'] / 1e3, '{:.2f}')} | "
            f"{fmt(s.get('device_busy_share'), '{:.0%}')} | {fmt(count, '{:.0f}')} | {launches:.0f} | "
            f"{s['top_level_aten_ops_per_token']:.0f} |"
        )
    for r in results:
        lines += ["", f"## {r['mode']}", ""]
        if "error" in r:
            lines.append(f"not profiled: {r['error']}")
            continue
        s = r["steps"]
        lines.append(f"cache {r['cache']}, {r['kv_positions']} positions; warm-up (capture / compile) "
                     f"{r['warmup_s']:.1f} s; host launch calls per token: "
                     + (", ".join(f"{k} {v:.0f}" for k, v in s["host_launch_calls_per_token"].items()) or "none"))
        lines += ["", f"| top {'kernels' if on_cuda else 'aten ops'} by self time | per token | µs/token | share |",
                  "| --- | --- | --- | --- |"]
        for t in s["top"]:
            name = t["name"] if len(t["name"]) <= 90 else t["name"][:87] + "..."
            lines.append(f"| `{name}` | {t['per_token']:.1f} | {t['us_per_token']:.1f} | {fmt(t['share'], '{:.0%}')} |")
        if s["layers"]:
            decoder = [x for x in s["layers"] if x["name"].startswith("layer_")]
            cpu = [x["cpu_us"] for x in decoder]
            line = (f"Per decoder layer ({len(decoder)}): host {np.mean(cpu):.0f} µs mean "
                    f"(min {min(cpu):.0f}, max {max(cpu):.0f})")
            if on_cuda:
                dev = [x["device_us"] for x in decoder]
                line += f", device {np.mean(dev):.0f} µs mean (min {min(dev):.0f}, max {max(dev):.0f})"
            rest = ", ".join(f"{x['name']} host {x['cpu_us']:.0f} µs" + (f" / device {x['device_us']:.0f} µs" if on_cuda else "")
                             for x in s["layers"] if not x["name"].startswith("layer_"))
            lines += ["", line + f"; {rest}."]
        elif s.get("device_us_per_layer_estimate") is not None:
            lines += ["", f"No per-layer ranges (the step is replayed / compiled): device time per token / "
                          f"{r['layers']} layers = {s['device_us_per_layer_estimate']:.0f} µs (lm_head included)."]
    return "\n".join(lines) + "\n"


def raw_text(results: list[dict]) -> str:
    parts = []
    for r in results:
        parts.append(f"==== {r['mode']} ====\n")
        if "error" in r:
            parts.append(f"not profiled: {r['error']}\n\n")
            continue
        for x in r["steps"]["layers"]:
            parts.append(f"{x['name']}: host {x['cpu_us']:.1f} us" + (f", device {x['device_us']:.1f} us\n" if x["device_us"] is not None else "\n"))
        parts.append(r["raw"] + "\n\n")
    return "".join(parts)


def write_reports(out: Path, meta: dict, results: list[dict], on_cuda: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile_decode.md").write_text(markdown(meta, results, on_cuda))
    (out / "profile_decode_raw.txt").write_text(raw_text(results))
    slim = [{k: v for k, v in r.items() if k != "raw"} for r in results]
    (out / "profile_decode.json").write_text(json.dumps({"meta": meta, "modes": slim}, indent=1, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU: checks the script itself")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    parser.add_argument("--size", default=None, help="7b (default), 13b, tiny (default with --tiny), tiny-b")
    parser.add_argument("--modes", default=None, help=f"comma list (default GPU: {','.join(GPU_MODES)}; "
                                                      f"CPU: {','.join(CPU_MODES)})")
    parser.add_argument("--steps", type=int, default=8, help="profiled steps after the single one")
    parser.add_argument("--context", type=int, default=64, help="tokens decoded before the profiled steps")
    parser.add_argument("--tokens", type=int, default=128, help="answer length the static cache is sized for")
    parser.add_argument("--budget-s", type=float, default=None, help="start no mode after this (default 120; 600 --tiny)")
    parser.add_argument("--compile-estimate-s", type=float, default=None,
                        help="seconds a compiled mode is expected to take before one was seen (default 100; 60 --tiny; "
                             "less once gpu_7b.py has filled the inductor cache)")
    parser.add_argument("--out", default=None, help="folder for profile_decode.md / _raw.txt / .json")
    add_smoke_argument(parser)
    args = parser.parse_args()
    if args.smoke:  # the tiny model on the CPU, a plain and a fused static step, a few steps
        args.tiny, args.steps, args.context = True, 2, 4
        args.modes = args.modes or "static,static+fused"
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    on_cuda = device.type == "cuda"
    budget = args.budget_s if args.budget_s is not None else (600.0 if args.tiny else 120.0)
    size = args.size or ("tiny" if args.tiny else "7b")
    modes = [Mode.parse(m) for m in (args.modes.split(",") if args.modes else (GPU_MODES if on_cuda else CPU_MODES))]

    import transformers

    start = time.perf_counter()
    tokenizer = bench_tokenizer()
    source = ModelSource(size, bench_config(size, tokenizer), device, torch.bfloat16)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": torch.cuda.get_device_name(device) if on_cuda else "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__, "size": size, "steps": args.steps,
            "context": args.context, "prompt": None}
    results: list[dict] = []
    compile_s = args.compile_estimate_s if args.compile_estimate_s is not None else (100.0 if on_cuda else 60.0)
    for mode in modes:
        needed = (compile_s if mode.decode == "compiled" else 10.0 if on_cuda else 2.0)
        left = budget - (time.perf_counter() - start)
        if needed > left:
            results.append({"mode": mode.name, "error": f"budget: needs ~{needed:.0f} s, {max(left, 0):.0f} s left"})
            log(f"[{mode.name}] skipped: {results[-1]['error']}")
            continue
        try:
            result = run_mode(source, mode, tokenizer, args, device)
        except (LoadOptionError, EngineError, ImportError) as exc:
            result = {"mode": mode.name, "error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # report and go on
            result = {"mode": mode.name, "error": f"failed: {type(exc).__name__}: {exc}"}
        forget_compiled()
        results.append(result)
        if "error" in result:
            log(f"[{mode.name}] {result['error']}")
        else:
            if mode.decode == "compiled":
                compile_s = max(1.1 * result["warmup_s"], 10.0)
            meta["prompt"] = result["prompt_positions"]
            s = result["steps"]
            log(f"[{mode.name}] {result['unprofiled_us_per_token'] / 1e3:.2f} ms/token unprofiled, "
                f"{s['wall_us_per_token'] / 1e3:.2f} profiled; "
                + (f"{s['kernels_per_token']:.0f} kernels/token, device busy {fmt(s['device_busy_share'], '{:.0%}')}"
                   if on_cuda else f"{s['aten_ops_per_token']:.0f} aten ops/token "
                                   f"({s['top_level_aten_ops_per_token']:.0f} top-level)")
                + f"; warm-up {result['warmup_s']:.1f} s")
        if args.out:
            write_reports(Path(args.out), meta, results, on_cuda)
    source.drop()
    log(f"done in {time.perf_counter() - start:.0f} s\n")
    print(markdown(meta, results, on_cuda), flush=True)
    report({r["mode"]: ({"error": r["error"]} if "error" in r else
                        {"us_per_token": r["unprofiled_us_per_token"], "layers": r["layers"]}) for r in results})


if __name__ == "__main__":
    main()
