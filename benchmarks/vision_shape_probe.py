"""How fast does a vision tower learn shape? The tower alone, taught colour and shape directly.

The embedded model's tower size (``demo_config``: 3 x 128 CLIP layers, 7 px patches, 168 px) with
the stem under test (``--stem patch``: CLIP's patch embedding; ``--stem conv``: the conv stem of
``demo_conv_config``), from scratch, trained with nothing but linear colour and shape heads on its
last layer (``training.attribute_heads``: per patch and per object, cross-entropy), AdamW with a
linear warm-up, new training-split scenes every step. No decoder, no LLM. Printed every
``--eval-every`` steps: per-object shape accuracy of the head on the training scenes of the last
``--eval-every`` steps and on fixed held-out-split scenes (8 shapes, chance 0.125), and the
seconds per step (render, forward + backward).

    OMP_NUM_THREADS=1 python benchmarks/vision_shape_probe.py --stem patch --steps 300 --out probe_patch.json
    OMP_NUM_THREADS=1 python benchmarks/vision_shape_probe.py --stem conv  --steps 300 --out probe_conv.json

Same ``--seed``, same scenes and the same initialisation of everything but the stem for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import add_smoke_argument, report  # noqa: E402

from pixellm_ros.engine.preprocess import preprocess_image  # noqa: E402
from pixellm_ros.model.vision import CLIPVisionTower  # noqa: E402
from pixellm_ros.training.attribute_heads import AttributeHeads, ObjectLabels, object_labels  # noqa: E402
from pixellm_ros.training.demo_config import MODEL_CONFIGS  # noqa: E402
from pixellm_ros.world.scene import sample_scene  # noqa: E402

STREAM_TAG = 0x5A9E  # the probe's own scenes: never the training stream's or an export's
HELDOUT_STREAM = 2**31 - 1
STEMS = {"patch": "demo", "conv": "demo_conv"}


def scenes(seed: int, step: int, count: int, split: str, cfg) -> tuple[torch.Tensor, list[ObjectLabels]]:  # type: ignore[no-untyped-def]
    pixels, labels = [], []
    for index in range(count):
        rng = np.random.default_rng([STREAM_TAG, seed, step, index])
        scene = sample_scene(rng, (cfg.image_size, cfg.image_size), split=split)  # type: ignore[arg-type]
        rgb, masks = scene.render()
        pre = preprocess_image(rgb, cfg.image_size, cfg.pixel_mean, cfg.pixel_std)
        pixels.append(pre.pixel_values[0])
        labels.append(object_labels(
            torch.from_numpy(masks), [o.colour for o in scene.objects], [o.shape for o in scene.objects],
            pre.valid_hw, cfg.image_size, cfg.patch_size,
        ))
    return torch.stack(pixels), labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stem", choices=sorted(STEMS), default=None, help="required (--smoke: patch)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--scenes-per-step", type=int, default=16)
    parser.add_argument("--heldout-scenes", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    add_smoke_argument(parser)
    args = parser.parse_args()
    if args.smoke:
        args.stem = args.stem or "patch"
        args.steps, args.scenes_per_step, args.heldout_scenes, args.eval_every, args.warmup = 2, 2, 2, 2, 1
    if args.stem is None:
        parser.error("--stem is required")
    torch.set_num_threads(args.threads)

    cfg = MODEL_CONFIGS[STEMS[args.stem]](512)  # the vocabulary does not matter: no LLM is built
    torch.manual_seed(args.seed)
    tower = CLIPVisionTower.from_config(cfg)
    torch.manual_seed(args.seed + 1)
    heads = AttributeHeads(cfg.vision.hidden_size)
    params = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(args.warmup, 1)))
    heldout = scenes(args.seed, HELDOUT_STREAM, args.heldout_scenes, "heldout", cfg)
    print(f"stem {args.stem}: tower {sum(p.numel() for p in tower.parameters()):,} parameters, "
          f"{args.threads} thread(s), {args.scenes_per_step} scenes a step", flush=True)

    rows, window, render_s, train_s = [], [], [], []
    for step in range(1, args.steps + 1):
        began = time.perf_counter()
        pixels, labels = scenes(args.seed, step, args.scenes_per_step, "train", cfg)
        rendered = time.perf_counter()
        tower.train()
        loss, metrics = heads(tower(pixels)[0], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        render_s.append(rendered - began)
        train_s.append(time.perf_counter() - rendered)
        window.append((metrics.get("object_shape_accuracy", 0.0), metrics["objects"]))
        if step % args.eval_every == 0 or step == args.steps:
            tower.eval()
            with torch.no_grad():
                _, held = heads(torch.cat([tower(heldout[0][i : i + 16])[0] for i in range(0, len(heldout[1]), 16)]),
                                heldout[1])
            train_acc = sum(a * n for a, n in window) / max(sum(n for _, n in window), 1.0)
            row = {
                "step": step, "train_object_shape_accuracy": train_acc,
                "heldout_object_shape_accuracy": held["object_shape_accuracy"],
                "heldout_object_colour_accuracy": held["object_colour_accuracy"],
                "heldout_patch_shape_accuracy": held["patch_shape_accuracy"],
                "render_s_per_step": float(np.median(render_s)), "train_s_per_step": float(np.median(train_s)),
                "loss": float(loss.detach()),
            }
            rows.append(row)
            window = []
            print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"stem": args.stem, "args": vars(args), "rows": rows}, indent=2) + "\n")
    report(rows[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
