"""What each self-training round and each post-processing step is worth on labelled soundscapes.

The submission's score (rule soundscape_score) is one number: the last round, the configured
post-processing. This module scores the grid behind it on the same soundscapes: every round's
fold ensemble (Keras) x overlapping windows (`hops_per_window`, which costs predictions) x
smoothing kernel x top-window scaling (which cost nothing: numpy on the rows); with a blend, the
BirdNET head alone and the blend of the last round too. Each (round, hops)
pair is predicted once and every post-processing of it is scored from those rows, through the
same `assemble_submission` as the submission, so the configured cell of the last round is the
submission's own score up to the export's tolerance (it runs the TFLite export by default).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dawnchorus.inference.engines import load_ensemble
from dawnchorus.inference.members import Blend, load_blend
from dawnchorus.inference.postprocess import NO_SMOOTHING
from dawnchorus.inference.recordings import FilePrediction, predict_recordings, window_end_seconds
from dawnchorus.inference.submission import (
    assemble_submission,
    check_classes,
    expected_submission_rows,
    score_soundscapes,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationGrid:
    """The settings compared (the predict config's `ablation` section)."""

    hops_per_window: tuple[int, ...]
    smoothing_kernels: tuple[tuple[float, ...], ...]
    scale_by_top_windows: tuple[int, ...]

    @classmethod
    def from_config(cls, ablation: Mapping) -> AblationGrid:
        return cls(
            tuple(sorted(set(ablation["hops_per_window"]))),
            tuple(
                dict.fromkeys(tuple(map(float, kernel)) for kernel in ablation["smoothing_kernels"])
            ),
            tuple(sorted(set(ablation["scale_by_top_windows"]))),
        )

    def post_processing(self) -> list[tuple[tuple[float, ...], int]]:
        return list(itertools.product(self.smoothing_kernels, self.scale_by_top_windows))


def post_processing_name(kernel: Sequence[float], top_windows: int) -> str:
    """A column heading: which post-processing a score had."""
    steps = []
    if tuple(kernel) != NO_SMOOTHING:
        steps.append(f"smoothing {list(kernel)}")
    if top_windows > 0:
        steps.append(f"top-{top_windows} scaling")
    return " + ".join(steps) or "none"


def soundscape_ablation(
    round_models: Mapping[int, Sequence[str | Path]],
    soundscapes: Sequence[str | Path],
    truth: pd.DataFrame,
    classes: Sequence[str],
    settings: Mapping,
    grid: AblationGrid,
    sample_submission: str | Path | None = None,
    threads: int = 1,
    blend_parts: Mapping | None = None,
) -> dict:
    """Score every round's fold ensemble on the labelled soundscapes under every setting of
    `grid`; `settings` are the predict config's SUBMISSION_SETTINGS (batch size, fallbacks, and
    the configured post-processing, which the result marks).

    With `blend_parts` (heads, embedding_model, weights: what `members.load_blend` takes), the
    BirdNET head alone and the blend of the last round's CNN with it are scored too, under the
    same post-processing (`member` says which: cnn, head or blend).

    Returns {"results": [one entry per member x round x hops x kernel x top-k: macro_auc, the
    settings, the rows scored and the prediction's audio seconds per second], "configured", ...}.
    Overlapping windows are skipped (with the reason) for models of several windows per input.
    """
    expected_rows = expected_submission_rows(sample_submission, classes)
    ordered = sorted(map(Path, soundscapes), key=lambda path: path.stem)
    last_round = max(round_models)
    results, skipped = [], []

    def score_all(member, round_index, hops, predictions, seconds, window_s) -> None:
        rows = sum(len(prediction.probabilities) for prediction in predictions)
        log.info(
            "%s, round %d, hops_per_window %d: %d rows in %.1f s",
            member,
            round_index,
            hops,
            rows,
            seconds,
        )
        for kernel, top_windows in grid.post_processing():
            variant = {
                **settings,
                "smoothing_kernel": list(kernel),
                "scale_by_top_windows": top_windows,
            }
            submission, _ = assemble_submission(
                predictions, classes, variant, expected_rows, window_s
            )
            results.append(
                {
                    "member": member,
                    "round": round_index,
                    "hops_per_window": hops,
                    "smoothing_kernel": list(kernel),
                    "scale_by_top_windows": top_windows,
                    "post_processing": post_processing_name(kernel, top_windows),
                    "macro_auc": score_soundscapes(submission, truth)["macro_auc"],
                    "rows": rows,
                    "audio_s_per_s": rows * window_s / seconds if seconds > 0 else None,
                }
            )

    head_rows: dict[Path, tuple] = {}
    for round_index in sorted(round_models):
        blend = (
            load_blend(round_models[round_index], threads=threads, **blend_parts)
            if blend_parts and round_index == last_round
            else Blend(load_ensemble(round_models[round_index], threads))
        )
        ensemble = blend.cnn
        check_classes(ensemble.classes, classes, "the taxonomy")
        window_s = ensemble.params.window_s
        # the first call builds the graph (seconds): not part of any setting's speed
        for _ in predict_recordings(
            ordered[:1], ensemble, settings["batch_size"], settings["min_last_window_s"]
        ):
            pass
        if blend.head is not None:  # the head's rows, once: they do not depend on the hops
            started = time.perf_counter()
            for path in ordered:
                head_rows[path] = blend.head.rows(
                    path, ensemble.params, settings["min_last_window_s"]
                )
            head_seconds = time.perf_counter() - started
            alone = [
                FilePrediction(path, window_end_seconds(len(rows), window_s), rows, error)
                for path, (rows, error) in head_rows.items()
            ]
            score_all("head", round_index, 1, alone, head_seconds, window_s)
        for hops in grid.hops_per_window:
            if hops > 1 and ensemble.segments > 1:
                skipped.append(
                    f"hops_per_window {hops}: the models take {ensemble.segments} windows per input"
                )
                continue
            started = time.perf_counter()
            predictions = list(
                predict_recordings(
                    ordered,
                    ensemble,
                    settings["batch_size"],
                    settings["min_last_window_s"],
                    hops_per_window=hops,
                )
            )
            seconds = time.perf_counter() - started
            score_all("cnn", round_index, hops, predictions, seconds, window_s)
            if blend.head is not None:
                blended = [
                    blend.combine(prediction, *head_rows[prediction.path])
                    for prediction in predictions
                ]
                score_all("blend", round_index, hops, blended, seconds + head_seconds, window_s)
    configured = {
        "member": "blend" if blend_parts else "cnn",
        "round": last_round,
        "hops_per_window": settings["hops_per_window"],
        "smoothing_kernel": [float(weight) for weight in settings["smoothing_kernel"]],
        "scale_by_top_windows": settings["scale_by_top_windows"],
    }
    return {
        "engine": "keras",
        "threads": threads,
        "soundscapes": len(ordered),
        "rounds": sorted(round_models),
        "configured": configured,
        "skipped": sorted(set(skipped)),
        "results": results,
    }
