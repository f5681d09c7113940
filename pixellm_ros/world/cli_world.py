"""`pixellm-ros world`: write a tabletop dataset in MUSE format.

Command module for ``pixellm_ros.cli``: ``HELP``, ``add_arguments(parser)``, ``run(args)``.
"""

from __future__ import annotations

import argparse

from pixellm_ros.world.muse_export import generate_dataset
from pixellm_ros.world.ontology import HELDOUT_COLOUR_SHAPE_SORTED, SPLITS


HELP = "write a procedural tabletop dataset (PNG images + MUSE-format JSON)"


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `pixellm-ros world` (the CLI's subcommand parser calls this)."""
    parser.add_argument("--out", required=True, help="output folder (images/ and {split}.json)")
    parser.add_argument("--num", type=int, default=1000, help="number of images")
    parser.add_argument("--split", choices=SPLITS, default="train", help="train, or heldout (unseen colour x shape pairs)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--width", type=int, default=224, help="image width in pixels")
    parser.add_argument("--height", type=int, default=224, help="image height in pixels")
    parser.add_argument("--questions", type=int, default=5, help="questions per image (at most)")


def run_world_cli(args: argparse.Namespace) -> int:
    """Run `pixellm-ros world` with parsed arguments; returns the exit code."""
    json_path = generate_dataset(
        args.out,
        num_images=args.num,
        seed=getattr(args, "seed", 0),
        split=args.split,
        image_size=(getattr(args, "height", 224), getattr(args, "width", 224)),
        questions_per_image=getattr(args, "questions", 5),
    )
    print(f"wrote {args.num} {args.split} images and {json_path}")
    if args.split == "heldout":
        pairs = ", ".join(f"{c} {s}" for c, s in HELDOUT_COLOUR_SHAPE_SORTED)
        print(f"held-out colour x shape pairs: {pairs}")
    return 0


add_arguments = add_world_arguments
run = run_world_cli
