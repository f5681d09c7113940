"""`pixellm-ros compare`: is the new model better than the base on the same questions?

Command module for ``pixellm_ros.cli``: ``HELP``, ``add_arguments(parser)``, ``run(args)``.
Takes two reports written by `pixellm-ros eval --out` on the same data (see ``comparison``).
"""

from __future__ import annotations

import argparse

from pixellm_ros.evaluation.comparison import GROUPINGS, load_question_records, paired_bootstrap

HELP = "compare two `eval --out` reports of the same data: paired bootstrap intervals of the differences"


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", help="report of the reference model (JSON from `pixellm-ros eval --out`)")
    parser.add_argument("new", help="report of the model to compare with it, on the same questions")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the images (default 2000)")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--by", action="append", default=[], choices=sorted(GROUPINGS),
                        help="also compare within groups of the questions: by question kind, by number of targets "
                             "(0 / 1 / 2+); repeat for both")
    parser.add_argument("--out", default=None, help="write the comparison as JSON here")


def run_compare_cli(args: argparse.Namespace) -> int:
    report = paired_bootstrap(
        load_question_records(args.base),
        load_question_records(args.new),
        resamples=args.resamples,
        confidence=args.confidence,
        seed=args.seed,
        by=tuple(dict.fromkeys(args.by)),
    )
    print(report.table())
    if args.out:
        report.write_json(args.out)
        print(f"wrote {args.out}")
    return 0


add_arguments = add_compare_arguments
run = run_compare_cli
