"""Kaggle submission: a soundscape's window rows, completed where audio is missing, and scored.

Every soundscape of sample_submission.csv gets its rows: those the ensemble predicted, and
fallback rows (with a `problems.csv` row saying why) where a file is missing, undecodable or short.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from dawnchorus.artifacts import write_table
from dawnchorus.data.manifest import read_classes
from dawnchorus.inference.engines import PredictionError
from dawnchorus.inference.members import Blend, load_blend, predict_blended
from dawnchorus.inference.postprocess import postprocess
from dawnchorus.inference.recordings import FilePrediction, window_end_seconds

log = logging.getLogger(__name__)

# the `predict` config keys soundscape_submission reads: the predict rule passes exactly these
# (changing another key, e.g. the export's tolerance, does not rerun the predictions)
SUBMISSION_SETTINGS = (
    "batch_size",
    "min_last_window_s",
    "fallback_probability",
    "fallback_duration_s",
    "smoothing_kernel",
    "scale_by_top_windows",
    "hops_per_window",
)


def row_ids(stem: str, end_s: Iterable[int | float]) -> list[str]:
    return [f"{stem}_{end}" for end in end_s]


def check_classes(model_classes: Sequence[str], expected: Sequence[str], source: str) -> None:
    """PredictionError unless the model predicts exactly `expected`, in that order."""
    if list(model_classes) == list(expected):
        return
    missing = [label for label in expected if label not in model_classes]
    extra = [label for label in model_classes if label not in expected]
    detail = (
        f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
        f"extra {extra[:5]}{'...' if len(extra) > 5 else ''}"
        if missing or extra
        else "same classes in another order"
    )
    raise PredictionError(
        f"the model's {len(model_classes)} classes differ from the {len(expected)} of "
        f"{source} ({detail}): predict with models trained on this taxonomy"
    )


def expected_submission_rows(
    sample_submission: str | Path | None, classes: Sequence[str]
) -> dict[str, list[str]]:
    """The row ids sample_submission.csv lists, by soundscape stem (none without the file)."""
    expected_rows: dict[str, list[str]] = {}
    if sample_submission is not None:
        sample = pd.read_csv(sample_submission)
        check_classes(list(sample.columns[1:]), classes, "the taxonomy (sample_submission.csv)")
        for row_id in sample["row_id"].astype(str):
            expected_rows.setdefault(row_id.rsplit("_", 1)[0], []).append(row_id)
    return expected_rows


def soundscape_submission(
    soundscapes: Sequence[str | Path],
    blend: Blend,
    classes: Sequence[str],
    settings: Mapping,
    sample_submission: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(submission, problems): one row per window of every soundscape, `classes` columns, from
    the CNN alone or the blend. `settings`: the predict config's SUBMISSION_SETTINGS. See
    `assemble_submission`."""
    check_classes(blend.classes, classes, "the taxonomy")
    expected_rows = expected_submission_rows(sample_submission, classes)
    ordered = sorted(map(Path, soundscapes), key=lambda path: path.stem)
    predictions = predict_blended(
        ordered,
        blend,
        settings["batch_size"],
        settings["min_last_window_s"],
        hops_per_window=settings["hops_per_window"],
    )
    # in a job's log (not a terminal) a progress line every 10 s, not one per file
    progress = tqdm(predictions, total=len(ordered), unit="file", mininterval=10)
    return assemble_submission(progress, classes, settings, expected_rows, blend.params.window_s)


def assemble_submission(
    predictions: Iterable[FilePrediction],
    classes: Sequence[str],
    settings: Mapping,
    expected_rows: Mapping[str, list[str]],
    window_s: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(submission, problems) from the soundscapes' window rows (`predict_recordings` without
    post-processing): each soundscape's rows post-processed (`settings`' smoothing kernel and
    top-window scaling), then completed.

    A soundscape one blend member could not read keeps the other member's rows, and `problems`
    says so (no row filled). A soundscape that cannot be (fully) decoded, or is shorter than the
    sample submission expects, keeps the rows it has; its missing rows (those of the sample
    submission for it, else
    `fallback_duration_s` worth for an undecodable one) get `fallback_probability`, and `problems`
    says which file, why, and how many rows were filled. A soundscape of the sample submission
    without an audio file keeps its rows too (all filled) and gets a `problems` row.
    """
    fallback_windows = max(1, math.ceil(settings["fallback_duration_s"] / window_s))
    blocks: list[tuple[str, pd.DataFrame]] = []  # (soundscape stem, its rows)
    problems = []

    def fallback_rows(source: Path, reason: str, predicted: int, filled: int) -> pd.DataFrame:
        """Record a soundscape's problem (the log names its path, problems.csv its file name);
        the `filled` rows of fallback probabilities it needs."""
        fallback = settings["fallback_probability"]
        log.warning(
            "%s: %s; %d window(s) predicted, %d row(s) filled with %g",
            source,
            reason,
            predicted,
            filled,
            fallback,
        )
        problems.append(
            {
                "filename": source.name,
                "reason": reason,
                "predicted_rows": predicted,
                "filled_rows": filled,
            }
        )
        return pd.DataFrame(fallback, index=range(filled), columns=list(classes))

    predicted_stems = set()
    for prediction in predictions:
        stem = prediction.path.stem
        predicted_stems.add(stem)
        ids = row_ids(stem, prediction.end_s)
        rows = postprocess(
            prediction.probabilities, settings["smoothing_kernel"], settings["scale_by_top_windows"]
        )
        block = pd.DataFrame(rows, columns=list(classes))
        wanted = expected_rows.get(stem, [])
        if prediction.error is not None and not wanted:
            wanted = row_ids(stem, window_end_seconds(fallback_windows, window_s))
        for note in prediction.notes:
            fallback_rows(prediction.path, note, len(ids), 0)
        predicted = set(ids)
        filled = [row_id for row_id in wanted if row_id not in predicted]
        if prediction.error is not None or filled:
            reason = prediction.error or "shorter than sample_submission.csv expects"
            fill = fallback_rows(prediction.path, reason, len(ids), len(filled))
            block = pd.concat([block, fill], ignore_index=True)
            ids = ids + filled
        block.insert(0, "row_id", ids)
        blocks.append((stem, block))
    # soundscapes the sample submission lists but that have no audio file: their rows are kept
    for stem, wanted in expected_rows.items():
        if stem not in predicted_stems:
            reason = "no audio file for this soundscape of sample_submission.csv"
            block = fallback_rows(Path(stem), reason, 0, len(wanted))
            block.insert(0, "row_id", wanted)
            blocks.append((stem, block))
    columns = ["row_id", *classes]
    blocks.sort(key=lambda stem_and_rows: stem_and_rows[0])  # stable: same-stem files keep order
    submission = (
        pd.concat([rows for _, rows in blocks], ignore_index=True)
        if blocks
        else pd.DataFrame(columns=columns)
    )
    problem_table = pd.DataFrame(
        problems, columns=["filename", "reason", "predicted_rows", "filled_rows"]
    )
    log.info(
        "%d soundscape(s), %d row(s), %d problem(s)",
        len(predicted_stems),
        len(submission),
        len(problems),
    )
    return submission[columns], problem_table


def score_soundscapes(submission: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """The competition metric of a submission against window labels (row_id + class columns)."""
    # scikit-learn, not imported when Snakemake imports this module to plan the DAG
    from dawnchorus.learning.metrics import birdclef_auc

    classes = [column for column in truth.columns if column != "row_id"]
    merged = truth.merge(submission, on="row_id", how="left", suffixes=("", "_predicted"))
    unmatched = merged[f"{classes[0]}_predicted"].isna()
    if unmatched.any():
        raise PredictionError(
            f"{int(unmatched.sum())} labelled window(s) have no prediction, e.g. "
            f"{merged.loc[unmatched, 'row_id'].iloc[0]}"
        )
    y_true = merged[classes].to_numpy()
    y_score = merged[[f"{label}_predicted" for label in classes]].to_numpy()
    auc = birdclef_auc(y_true, y_score)
    return {
        "macro_auc": auc.macro,
        "windows": len(merged),
        "scored_classes": int(auc.scored.sum()),
        "skipped_classes": auc.skipped(classes),
        "per_class_auc": {
            label: (None if np.isnan(value) else float(value))
            for label, value in zip(classes, auc.per_class, strict=True)
        },
    }


def submission_stage(
    model_paths: Sequence[str | Path],
    soundscapes: Sequence[str | Path],
    classes_txt: str | Path,
    settings: Mapping,
    submission_csv: str | Path,
    problems_csv: str | Path,
    sample_submission: str | Path | None = None,
    threads: int = 1,
    heads: Sequence[str | Path] = (),
    embedding_model: str | Path | None = None,
    weights_json: str | Path | None = None,
) -> None:
    """Rule predict: every test soundscape -> submission.csv (and problems.csv, maybe empty),
    through the blend when heads, the BirdNET model and the blend's weights are given."""
    blend = load_blend(model_paths, heads, embedding_model, weights_json, threads)
    log.info("predicting with %s: %s", blend.describe(), ", ".join(blend.cnn.sources))
    submission, problems = soundscape_submission(
        soundscapes, blend, read_classes(classes_txt), settings, sample_submission
    )
    write_table(problems, problems_csv)
    write_table(submission, submission_csv)
