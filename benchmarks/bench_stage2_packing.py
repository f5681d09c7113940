"""How much does stage 2 gain by asking several questions of a scene in one sequence?

Stage 2's step (forward, backward, clipped AdamW step) on the embedded model as `pixellm-ros train
--stage1-from pixellm_ros/assets/default_model` builds it (the package LLM with fresh adapters, the
shipped object tokenizer and decoder), timed for each layout: ``questions`` per step asked
``per_scene`` to a sequence (the training settings ``stage2_batch`` and ``questions_per_scene``). The
first layout is the recipe's before packing (16 questions, one a sequence; the shipped recipe's is
32x4); the others are printed as its multiple in questions per second, with the tokens each step reads.
``--frozen both`` times each layout twice, its steps interleaved: the LLM's frozen weights cast by
autocast on every forward (``cast``, as before ``stage2.frozen_weights_in``) and held in bfloat16
(``held``, as `pixellm-ros train` does); the held rows are printed as the cast ones' multiple too.
``--llm-layers 0,16,8`` times the layouts again for each LLM depth (the training setting ``llm_layers``:
the base's first N layers, 0 all), on the same scenes; every row is printed as the first's multiple.

    python benchmarks/bench_stage2_packing.py [--scenes 96] [--steps 4] [--threads 2] [--object-orders O]
                                              [--layouts 32x4,16x1] [--memory both] [--frozen held|cast|both]
                                              [--llm-layers 0,16]
    python benchmarks/bench_stage2_packing.py --smoke   # 12 scenes, one step a layout
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import add_smoke_argument, report  # noqa: E402

from pixellm_ros.training.memory import MODES, take_memory  # noqa: E402  (imports no torch)

LAYOUTS = ((16, 1), (16, 4), (32, 4), (24, 3), (48, 4))  # (questions per step, questions per sequence)
SMOKE_LAYOUTS = ((4, 1), (4, 2))


def _layouts(text: str) -> tuple[tuple[int, int], ...]:
    """"32x4,16x1" -> ((32, 4), (16, 1))."""
    return tuple((int(q), int(n)) for q, n in (item.split("x") for item in text.split(",")))


def _timed_layout(model, tokenizer, pool, scenes, settings, optimizer, questions: int, per_scene: int,
                  steps: int, modes: tuple[str, ...]) -> list[dict]:
    """One row per frozen-weights mode: ``steps`` stage-2 steps (after one untimed) of ``questions``
    questions, ``per_scene`` to a sequence, the modes interleaved on the same steps."""
    import torch

    from pixellm_ros.training.stage2 import AUTOCAST_DTYPE, draw_examples, frozen_weights_in, pack_rows, stage2_loss

    params = [p for group in optimizer.param_groups for p in group["params"]]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    faults: dict[str, list[int]] = {mode: [] for mode in modes}
    tokens = []
    for step in range(steps + 1):
        groups = draw_examples(scenes, pool, questions, settings.seed, step, settings.phrasing_rate,
                               settings.none_rate, settings.typo_rate, per_scene)
        packed = pack_rows(tokenizer, model.config, groups)
        # text tokens plus the image tokens each sequence holds instead of its placeholder
        tokens.append(int(packed.attention.sum()) + len(groups) * (model.config.image_token_len - 1))
        for mode in modes:  # interleaved: the same steps, the same state of the process
            with frozen_weights_in(model, AUTOCAST_DTYPE if mode == "held" else torch.float32):
                began, faulted = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                losses = stage2_loss(model, tokenizer, scenes, groups, settings.prompt_distillation)
                optimizer.zero_grad(set_to_none=True)
                losses.total.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                if step > 0:
                    times[mode].append(time.perf_counter() - began)
                    faults[mode].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faulted)
    rows = []
    for mode in modes:
        spent = times[mode]
        rows.append({"llm_layers": len(model.language_model.model.layers), "questions": questions,
                     "per_scene": per_scene, "frozen": mode, "step_s": statistics.median(spent),
                     "tokens": statistics.mean(tokens[1:]), "page_faults": statistics.median(faults[mode]),
                     # the first and the last quarter of the steps: whether a long run's steps slow down
                     "first_s": statistics.median(spent[: max(1, len(spent) // 4)]),
                     "last_s": statistics.median(spent[-max(1, len(spent) // 4):])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=96)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per layout (after one untimed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--object-orders", default=None, help="the training setting of that name (default the recipe's)")
    parser.add_argument("--layouts", type=_layouts, default=None,
                        help="QxN,...: Q questions a step asked N to a sequence (default: the five above)")
    parser.add_argument("--memory", choices=sorted(MODES), default="default",
                        help="the process's memory settings (training.memory; `pixellm-ros train --memory`)")
    parser.add_argument("--frozen", choices=("held", "cast", "both"), default="held",
                        help="the frozen LLM weights held in bfloat16 (as training does), cast on every forward, or both")
    parser.add_argument("--llm-layers", type=lambda text: tuple(int(n) for n in text.split(",")), default=(0,),
                        help="N,...: the LLM's depths timed, each the base's first N layers (0: all; default 0)")
    add_smoke_argument(parser)
    args = parser.parse_args()
    if args.smoke:
        args.scenes, args.steps = 12, 1
    layouts = args.layouts or (SMOKE_LAYOUTS if args.smoke else LAYOUTS)
    taken = take_memory(args.memory)  # before torch is imported

    import torch

    from pixellm_ros.engine.engine import DEFAULT_MODEL_DIR
    from pixellm_ros.training.run import new_embedded_model
    from pixellm_ros.training.scenes import build_pool
    from pixellm_ros.training.settings import recipe
    from pixellm_ros.training.stage1 import PromptHead, load_stage1_parts
    from pixellm_ros.training.stage2 import (
        add_adapters,
        prepare_scenes,
        stage2_parameters,
    )

    torch.set_num_threads(args.threads)

    orders = {} if args.object_orders is None else {"object_orders": args.object_orders}
    modes = ("cast", "held") if args.frozen == "both" else (args.frozen,)
    pool = scenes = None
    rows: list[dict] = []
    for depth in args.llm_layers:
        settings = recipe("cpu", llm_layers=f"0-{depth - 1}" if depth else "", **orders)
        model, tokenizer = new_embedded_model(settings, progress=False)
        prompt_head = PromptHead.for_model(model)
        load_stage1_parts(DEFAULT_MODEL_DIR, model, prompt_head)
        add_adapters(model, tokenizer, settings.lora_rank)
        if pool is None:  # the encoder and stage 1 are the same at every depth: one set of scenes
            with tempfile.TemporaryDirectory() as folder:
                pool = build_pool(model, args.scenes, "train", settings.seed, settings.wide_scene_share, folder,
                                  progress=False)
            scenes = prepare_scenes(model, prompt_head, pool)
        optimizer = torch.optim.AdamW(stage2_parameters(model), lr=1e-4)
        for questions, per_scene in layouts:
            rows += _timed_layout(model, tokenizer, pool, scenes, settings, optimizer, questions, per_scene,
                                  args.steps, modes)
        del model, optimizer
    base = rows[0]["questions"] / rows[0]["step_s"]
    print(f"stage-2 steps, {args.threads} threads, median of {args.steps}, object orders {settings.object_orders}, "
          f"memory {args.memory} (taken: {', '.join(taken) or 'nothing'}); base: {layouts[0][0]} questions "
          f"{layouts[0][1]} to a sequence, frozen weights {modes[0]}")
    print("LLM layers | questions | per sequence | frozen | tokens a step | s a step | page faults a step | questions/s vs base"
          + (" | held vs cast" if len(modes) == 2 else ""))
    for index, row in enumerate(rows):
        row["speedup"] = row["questions"] / row["step_s"] / base
        line = (f"{row['llm_layers']:10d} | {row['questions']:9d} | {row['per_scene']:12d} | {row['frozen']:6s} | {row['tokens']:13.0f} | "
                f"{row['step_s']:8.2f} | {row['page_faults']:18.0f} | {row['speedup']:.2f}x")
        if len(modes) == 2 and row["frozen"] == "held":
            row["held_vs_cast"] = rows[index - 1]["step_s"] / row["step_s"]
            line += f" | {row['held_vs_cast']:.2f}x"
        print(line)
    report({"layouts": rows, "memory": args.memory, "memory_taken": taken, "frozen": args.frozen})


if __name__ == "__main__":
    main()
