"""``pixellm-ros segment``: one image and one instruction -> result.json and overlay.png."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "segment the targets an instruction names in one image (writes result.json and overlay.png)"

EXIT_OK = 0
EXIT_ENGINE_ERROR = 1
EXIT_INVALID_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the model shipped in the package)")
    parser.add_argument("--clip", type=Path, default=None, help="CLIP folder, for a released checkpoint")
    parser.add_argument("--image", type=Path, required=True, help="image file (any format OpenCV reads)")
    parser.add_argument("--instruction", required=True, help="what to segment, e.g. 'Segment the red cup.'")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    # Checked by the loader (load_options.LOAD_IN_CHOICES), which says what is wrong; no torch import here.
    parser.add_argument("--load-in", default="none", help="weight quantisation: none (default), 8bit | 4bit "
                        "(bitsandbytes, CUDA), int8_weight | int4_weight (torchao; int4 CUDA, bfloat16)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="answer length limit (default: the model's)")
    parser.add_argument("--mask-threshold", type=float, default=0.5,
                        help="foreground probability above which a pixel is in a mask, 0 < p < 1 (default 0.5)")
    parser.add_argument("--quiet", action="store_true", help="do not stream the answer to stdout")
    parser.add_argument("--objects", action="store_true",
                        help="first print what the model reads of the image: each detected object's words "
                             "(a model with a CNN encoder, as the embedded one)")


def run(args: argparse.Namespace) -> int:
    import cv2

    from pixellm_ros.engine import EngineError, InvalidInputError, PixelLMEngine
    from pixellm_ros.engine.overlay import draw_overlay

    bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if bgr is None:
        print(f"error: cannot read image {args.image}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    try:
        engine = PixelLMEngine.from_pretrained(
            args.model,
            clip_dir=args.clip,
            device=args.device,
            dtype=args.dtype,
            load_in=args.load_in,
            max_new_tokens=args.max_new_tokens,
            mask_threshold=args.mask_threshold,
        )
        if args.objects:
            print("objects read, left to right: " + "; ".join(engine.objects_read(image)))
        on_text = None if args.quiet else (lambda piece: print(piece, end="", flush=True))
        result = engine.segment(image, args.instruction, on_text=on_text)
    except InvalidInputError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except EngineError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return EXIT_ENGINE_ERROR
    if not args.quiet:
        print()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(result.to_json() + "\n", encoding="utf-8")
    overlay = draw_overlay(image, result)
    cv2.imwrite(str(args.out / "overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        for target in result.targets:
            print(f"  {target.name}: box {target.box} score {target.score:.3f}")
        print(f"wrote {args.out / 'result.json'} and {args.out / 'overlay.png'}")
    return EXIT_OK
