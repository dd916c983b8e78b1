"""The `dawnchorus` command."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence

from dawnchorus import __version__


def _demo_defaults() -> dict:
    from dawnchorus.demo import generate_demo_data

    return {
        name: parameter.default
        for name, parameter in inspect.signature(generate_demo_data).parameters.items()
    }


def _add_demo_data(subparsers) -> None:
    defaults = _demo_defaults()
    parser = subparsers.add_parser(
        "demo-data",
        help="write a synthetic data set in the BirdCLEF 2025 layout (offline, deterministic)",
        description="Write a synthetic data set in the BirdCLEF 2025 layout: train.csv, "
        "taxonomy.csv, train_audio/, train_soundscapes/, test_soundscapes/, "
        "sample_submission.csv and the soundscapes' ground truth.",
    )
    parser.add_argument("out", help="output folder (the workflow's data_dir)")
    parser.add_argument(
        "--species",
        type=int,
        default=defaults["n_species"],
        help="number of species (default: %(default)s)",
    )
    parser.add_argument(
        "--per-species",
        type=int,
        default=defaults["per_species"],
        help="mean recordings per species; classes are imbalanced from 1.5x to "
        "0.5x the mean (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults["seed"], help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--test-soundscapes",
        type=int,
        default=defaults["n_test_soundscapes"],
        help="one-minute soundscapes to predict (default: %(default)s)",
    )
    parser.add_argument(
        "--train-soundscapes",
        type=int,
        default=defaults["n_train_soundscapes"],
        help="unlabelled one-minute soundscapes (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes (default: all CPU cores)"
    )
    parser.set_defaults(handler=_run_demo_data)


def _run_demo_data(args: argparse.Namespace) -> int:
    from dawnchorus.demo import generate_demo_data

    summary = generate_demo_data(
        args.out,
        n_species=args.species,
        per_species=args.per_species,
        seed=args.seed,
        n_test_soundscapes=args.test_soundscapes,
        n_train_soundscapes=args.train_soundscapes,
        workers=args.workers,
    )
    print(json.dumps({"out": str(args.out), **summary}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dawnchorus", description="Bird-sound classifiers from BirdCLEF-layout folders."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_demo_data(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError) as error:
        print(f"dawnchorus {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
