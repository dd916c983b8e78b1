"""Where int8 takes its calibration windows from, on a finished run with window labels (the
demo): the CNN's int8 export calibrated on

  soundscapes     up to 16 train_soundscapes, as the workflow does when they exist
  clips, decoded  training recordings decoded and cut as prediction cuts them, windows spread
                  over each (the workflow without train_soundscapes/)
  clips, shards   one stored spectrogram window per training recording (before)

each beside the fp32 export: the macro-AUC change on the export's labelled check windows (the
export's own check) and the test soundscapes' macro-AUC, the submission's post-processing.

Usage: python benchmarks/calibration.py [--results results/demo] [--data data/demo]
           [--config config/demo.yaml] [--clip-recordings 32 64]  (training recordings the
           decoded clips come from: `export.CALIBRATION_RECORDINGS` and others)
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import pandas as pd

from dawnchorus.config import load_config
from dawnchorus.data.soundscapes import SOUNDSCAPE_DIR, list_soundscapes
from dawnchorus.inference import export
from dawnchorus.inference.engines import load_ensemble
from dawnchorus.inference.export import export_stage
from dawnchorus.inference.members import Blend
from dawnchorus.inference.submission import score_soundscapes, soundscape_submission

CALIBRATION_SOUNDSCAPES = 16  # as the workflow's export rule takes them


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--config", default="config/demo.yaml")
    parser.add_argument(
        "--clip-recordings", type=int, nargs="+", default=[export.CALIBRATION_RECORDINGS]
    )
    parser.add_argument(
        "--sources", nargs="+", default=["soundscapes", "clips, decoded", "clips, shards"]
    )
    args = parser.parse_args()
    config = load_config(args.config, {"data_dir": str(args.data)})
    rounds = sorted((args.results / "models").glob("round_*"))
    models = sorted((rounds[-1] if rounds else args.results / "models").glob("fold_*/model.keras"))
    shards = sorted((args.results / "spectrograms").glob("shard_*.h5"))
    names = list_soundscapes(args.data)
    step = max(1, len(names) // CALIBRATION_SOUNDSCAPES)
    soundscapes = [
        args.data / SOUNDSCAPE_DIR / name for name in names[::step][:CALIBRATION_SOUNDSCAPES]
    ]
    sources = {"soundscapes": ({"calibration_audio": soundscapes}, None)}
    for count in args.clip_recordings:
        sources[f"clips, decoded ({count})"] = (
            {"clip_audio_dir": args.data / "train_audio"},
            count,
        )
    sources["clips, shards"] = ({}, None)
    sources = {
        name: source
        for name, source in sources.items()
        if any(name.startswith(wanted) for wanted in args.sources)
    }
    test = sorted((args.data / "test_soundscapes").glob("*.ogg"))
    truth = pd.read_csv(args.data / "test_soundscapes_ground_truth.csv")
    settings = config["predict"]

    def soundscape_auc(export: Path, precision: str) -> float:
        ensemble = load_ensemble([export], threads=2, engine="tflite", precision=precision)
        predictor = Blend(ensemble)
        submission, _ = soundscape_submission(test, predictor, predictor.classes, settings)
        return score_soundscapes(submission, truth)["macro_auc"]

    print(f"{len(models)} fold models of {args.results}, {len(test)} test soundscapes")
    print(f"{'calibration':22s} {'windows':>8s} {'check AUC change':>17s} {'soundscapes':>12s}")
    fp32 = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, recordings) in sources.items():
            export.CALIBRATION_RECORDINGS = recordings or export.CALIBRATION_RECORDINGS
            out = Path(tmp) / re.sub(r"\W+", "_", name) / "model.tflite"
            card = export_stage(
                models,
                args.results / "data" / "manifest.csv",
                shards,
                config,
                out,
                threads=2,
                **source,
            )
            checks = card["checks"]["tflite-int8"]
            if fp32 is None:
                fp32 = soundscape_auc(out.parent, "fp32")
                print(f"{'fp32 (none)':22s} {'':>8s} {'':>17s} {fp32:12.4f}")
            auc = soundscape_auc(out.parent, "int8")
            print(
                f"{name:22s} {checks['calibration_windows']:8d} "
                f"{checks['macro_auc_change']:+17.4f} {auc:12.4f} ({auc - fp32:+.4f})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
