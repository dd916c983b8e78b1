"""The report's plots (matplotlib, Agg backend): learning curves, per-class AUC, soundscape AUC,
class frequency against AUC, tuning trials."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, out: str | Path) -> None:
    if figure.get_layout_engine() is None:  # a constrained layout places itself
        figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    log.info("wrote %s", out)


def plot_learning_curves(history_paths: Sequence[str | Path], out: str | Path) -> None:
    plt = _pyplot()
    figure, (loss_axis, auc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for path in history_paths:
        history = pd.read_csv(path)
        fold = Path(path).parent.name.replace("_", " ")
        epochs = history["epoch"] + 1
        line = loss_axis.plot(epochs, history["loss"], label=f"{fold} train")[0]
        loss_axis.plot(
            epochs, history["val_loss"], "--", color=line.get_color(), label=f"{fold} validation"
        )
        auc_axis.plot(epochs, history["val_auc"], color=line.get_color(), label=fold)
    loss_axis.set(xlabel="epoch", ylabel="binary cross-entropy", title="Loss")
    auc_axis.set(xlabel="epoch", ylabel="macro ROC-AUC (BirdCLEF)", title="Validation AUC")
    loss_axis.legend(fontsize=7)
    auc_axis.legend(fontsize=7)
    _save(plt, figure, out)


def plot_per_class_auc(per_class: pd.DataFrame, out: str | Path) -> None:
    plt = _pyplot()
    figure = per_class_auc_figure(plt, per_class)
    _save(plt, figure, out)


PER_CLASS_BARS = (
    ("oof_auc", "CNN", "tab:blue"),
    ("baseline_oof_auc", "baseline", "lightgray"),
    ("reference_oof_auc", "BirdNET head", "tab:orange"),
    ("ensemble_oof_auc", "blend", "tab:purple"),
)


def per_class_auc_figure(plt, per_class: pd.DataFrame):
    """Each class's OOF AUC, one bar per model that ran; the legend above the axes, where it
    covers neither bars nor the axis label."""
    table = per_class.sort_values("oof_auc", na_position="first")
    height = max(3.0, 0.22 * len(table) + 1.2)
    figure, axis = plt.subplots(figsize=(7, height), layout="constrained")
    positions = np.arange(len(table))
    bars = [bar for bar in PER_CLASS_BARS if bar[0] in table]
    bar_height = 0.8 / len(bars)
    for index, (column, label, colour) in enumerate(bars):
        offset = (index - (len(bars) - 1) / 2) * bar_height
        axis.barh(positions + offset, table[column], height=bar_height, label=label, color=colour)
    axis.set_yticks(positions, table["class"], fontsize=7)
    axis.set(xlabel="ROC-AUC", xlim=(0, 1))
    axis.axvline(0.5, color="black", linewidth=0.5)
    figure.suptitle("Per-class AUC")
    figure.legend(fontsize=8, loc="outside upper center", ncol=2)
    return figure


def plot_soundscape_auc(scores: Mapping, out: str | Path) -> None:
    """Per-class soundscape AUC of the ensemble, the macro-AUC (competition metric) in the title."""
    plt = _pyplot()
    per_class = {label: auc for label, auc in scores["per_class_auc"].items() if auc is not None}
    labels = sorted(per_class, key=per_class.get)
    figure, axis = plt.subplots(figsize=(7, max(3.0, 0.22 * len(labels) + 1)))
    axis.barh(np.arange(len(labels)), [per_class[label] for label in labels], color="tab:green")
    axis.set_yticks(np.arange(len(labels)), labels, fontsize=7)
    axis.axvline(0.5, color="black", linewidth=0.5)
    axis.set(
        xlabel="ROC-AUC over 5-s windows",
        xlim=(0, 1),
        title=f"Soundscapes: macro-AUC {scores['macro_auc']:.3f} "
        f"({scores['windows']} windows, {scores['scored_classes']} classes scored)",
    )
    _save(plt, figure, out)


def plot_model_scores(scores: Sequence[tuple[str, float, float | None]], out: str | Path) -> None:
    plt = _pyplot()
    _save(plt, model_scores_figure(plt, scores), out)


def model_scores_figure(plt, scores: Sequence[tuple[str, float, float | None]]):
    """The report's first chart: each model's cross-validated and test-soundscape macro-AUC
    (name, cv, soundscapes or None), the first model on top, the value at each bar's end."""
    figure, axis = plt.subplots(figsize=(6.4, 0.62 * len(scores) + 1.1), layout="constrained")
    rows = np.arange(len(scores))[::-1]
    for column, label, colour, offset in (
        (1, "cross-validated", "tab:blue", 0.2),
        (2, "test soundscapes", "tab:green", -0.2),
    ):
        for row, entry in zip(rows, scores, strict=True):
            value = entry[column]
            if value is None:
                continue
            axis.barh(row + offset, value, height=0.38, color=colour, label=label)
            axis.annotate(
                f"{value:.3f}",
                (value, row + offset),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
            label = None  # one legend entry per kind of bar
    axis.set_yticks(rows, [entry[0] for entry in scores])
    axis.set(xlabel="macro ROC-AUC (0.5 is chance)", xlim=(0, 1.08))
    axis.axvline(0.5, color="black", linewidth=0.5)
    figure.legend(fontsize=8, loc="outside upper center", ncol=2)
    return figure


def plot_frequency_vs_auc(per_class: pd.DataFrame, out: str | Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(per_class["n_recordings"], per_class["oof_auc"], s=14)
    if len(per_class) <= 40:  # beyond that the names only hide the points
        points = zip(
            per_class["class"], per_class["n_recordings"], per_class["oof_auc"], strict=True
        )
        for label, count, auc in points:
            if np.isfinite(auc):
                axis.annotate(
                    label, (count, auc), fontsize=6, xytext=(2, 2), textcoords="offset points"
                )
    axis.set_xscale("log")
    axis.set(
        xlabel="recordings with the class (primary or secondary)",
        ylabel="out-of-fold ROC-AUC",
        title="Class frequency vs AUC",
        ylim=(0, 1.02),
    )
    _save(plt, figure, out)


def plot_tuning_trials(results: Mapping, out: str | Path) -> None:
    """val_auc of each trial in the order they started; failed trials marked at the bottom."""
    plt = _pyplot()
    trials = results["trials"]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.3 * len(trials) + 2), 4))
    positions = np.arange(len(trials))
    scores = np.array([np.nan if t["score"] is None else t["score"] for t in trials])
    scored = np.isfinite(scores)
    axis.bar(positions[scored], scores[scored], color="tab:blue", label="val_auc")
    if (~scored).any():
        axis.scatter(
            positions[~scored],
            np.zeros((~scored).sum()),
            marker="x",
            color="tab:red",
            label="failed (no score)",
        )
    best = [i for i, t in enumerate(trials) if t["trial_id"] == results["best_trial_id"]]
    axis.bar(best, scores[best], color="tab:orange", label="best")
    axis.set_xticks(positions, [t["trial_id"] for t in trials], fontsize=7, rotation=90)
    axis.set(
        xlabel="trial",
        ylabel="validation macro ROC-AUC",
        ylim=(0, 1.02),
        title=f"{results['tuner_type']} on fold {results['fold']}",
    )
    axis.legend(fontsize=8, loc="lower right")
    _save(plt, figure, out)


def plot_hyperparameters_vs_score(results: Mapping, out: str | Path) -> None:
    """One panel per tuned hyperparameter: its value in each scored trial against val_auc."""
    plt = _pyplot()
    scored = [t for t in results["trials"] if t["score"] is not None]
    names = list(results["best_overall_hyperparameters"])
    columns = 4
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    scores = [t["score"] for t in scored]
    for axis, name in zip(axes.flat, names, strict=False):
        values = [t["hyperparameters"][name] for t in scored]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            axis.scatter(values, scores, s=16)
            if name == "learning_rate":
                axis.set_xscale("log")
        else:  # categorical: one column per choice the search had, tried or not
            choices = [str(c) for c in results["search_space"].get(name, [])] or sorted(
                {str(v) for v in values}
            )
            axis.scatter([choices.index(str(v)) for v in values], scores, s=16)
            axis.set_xticks(range(len(choices)), choices, fontsize=7, rotation=20)
        axis.set(xlabel=name, ylabel="val_auc")
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    _save(plt, figure, out)
