"""Cross-validation summary (the seed's cv_results.json) and the report's plots."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dawnchorus.artifacts import read_json, write_json, write_table
from dawnchorus.manifest import label_matrix, read_classes, read_manifest
from dawnchorus.metrics import birdclef_auc

log = logging.getLogger(__name__)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(np.mean(array)), float(np.std(array))


def _summary_block(head_metrics: Mapping) -> dict:
    """A head's metrics.json (baseline, reference) as cv_results.json shows it."""
    return {key: value for key, value in head_metrics.items() if key != "per_class_oof_auc"}


def _per_class_oof_auc(head_metrics: Mapping, classes: Sequence[str]) -> list[float]:
    per_class = head_metrics.get("per_class_oof_auc", {})
    return [per_class.get(label, np.nan) for label in classes]


def _read_folds(
    metrics_paths: Sequence[str | Path], oof_paths: Sequence[str | Path]
) -> tuple[list[dict], pd.DataFrame]:
    """The folds' metrics.json and their out-of-fold predictions, concatenated."""
    folds = [read_json(path) for path in metrics_paths]
    oof = pd.concat(
        [pd.read_csv(path, keep_default_na=False) for path in oof_paths], ignore_index=True
    )
    return folds, oof


def _oof_auc(oof: pd.DataFrame, labels: pd.DataFrame, classes: Sequence[str]):
    return birdclef_auc(labels.loc[oof["filename"]].to_numpy(), oof[list(classes)].to_numpy())


def _round_summary(round_index: int, folds: Sequence[Mapping], oof_auc: float) -> dict:
    """One self-training round's CV: mean, std and OOF macro-AUC, each fold's, and how many
    pseudo-labelled windows its folds mixed in (0: a warm restart on the labelled recordings)."""
    mean, std = _mean_std([entry["val_auc"] for entry in folds])
    return {
        "round": round_index,
        "mean_val_auc": mean,
        "std_val_auc": std,
        "oof_val_auc": oof_auc,
        "fold_val_auc": {f"fold_{entry['fold']}": entry["val_auc"] for entry in folds},
        "pseudo_windows": sum(entry.get("n_pseudo_windows", 0) for entry in folds),
    }


def _round_name(entry: Mapping) -> str:
    """How the report names a round: round 0 learns from the labelled recordings only; a later
    round self-trains, or without pseudo-labelled windows (no train soundscapes) restarts."""
    if entry["round"] == 0:
        return "round 0 (labelled recordings only)"
    if entry.get("pseudo_windows", 1) == 0:
        return f"round {entry['round']} (a warm restart: no pseudo-labelled windows)"
    return f"self-training round {entry['round']}"


def aggregate_folds(
    metrics_paths: Sequence[str | Path],
    oof_paths: Sequence[str | Path],
    manifest_csv: str | Path,
    classes_txt: str | Path,
    baseline: Mapping,
    training_config: Mapping,
    reference: Mapping | None = None,
    rounds: int = 0,
    earlier_rounds: Sequence[Mapping] = (),
) -> tuple[dict, pd.DataFrame]:
    """cv_results (seed schema plus OOF AUC, the baseline and, when it ran, the BirdNET
    reference) and per-class AUCs.

    With self-training, the fold files are the last round's (`rounds`); `earlier_rounds` ({round,
    metrics, oof} per round before it) go into a `rounds` block beside them."""
    classes = read_classes(classes_txt)
    manifest = read_manifest(manifest_csv)
    labels = pd.DataFrame(
        label_matrix(manifest, classes), columns=classes, index=manifest["filename"]
    )
    folds, oof = _read_folds(metrics_paths, oof_paths)
    oof_auc = _oof_auc(oof, labels, classes)

    individual = {}
    for entry, path in zip(folds, metrics_paths, strict=True):
        individual[f"fold_{entry['fold']}"] = {
            "fold": entry["fold"],
            "best_epoch": entry["best_epoch"],
            "best_val_loss": entry["best_val_loss"],
            "val_auc": entry["val_auc"],
            "model_path": str(Path(path).parent / "model.keras"),
            "training_time": entry["training_time"],
            "epochs_run": entry["epochs_run"],
            "n_train": entry["n_train"],
            "n_val": entry["n_val"],
        }
    val_auc = _mean_std([entry["val_auc"] for entry in folds])
    val_loss = _mean_std([entry["val_loss"] for entry in folds])
    train_loss = _mean_std([entry["train_loss_at_best"] for entry in folds])
    hyperparameters = folds[0]["hyperparameters"] if folds else {}
    cv_results = {
        "cv_results": {
            "mean_val_auc": val_auc[0],
            "std_val_auc": val_auc[1],
            "mean_val_loss": val_loss[0],
            "std_val_loss": val_loss[1],
            "mean_train_loss": train_loss[0],
            "std_train_loss": train_loss[1],
            "oof_val_auc": oof_auc.macro,
        },
        "individual_folds": individual,
        "num_completed_folds": len(folds),
        "training_config": dict(training_config),
        "hyperparameters": hyperparameters,
        "hyperparameter_source": folds[0].get("hyperparameter_source", "config") if folds else "",
        "baseline": _summary_block(baseline),
        "cnn_minus_baseline_val_auc": val_auc[0] - baseline["cv_results"]["mean_val_auc"],
    }
    if rounds or earlier_rounds:
        cv_results["self_training_rounds"] = rounds
        earlier = []
        for entry in earlier_rounds:
            round_folds, round_oof = _read_folds(entry["metrics"], entry["oof"])
            round_auc = _oof_auc(round_oof, labels, classes).macro
            earlier.append(_round_summary(entry["round"], round_folds, round_auc))
        cv_results["rounds"] = [*earlier, _round_summary(rounds, folds, oof_auc.macro)]
    if reference is not None:
        cv_results["reference"] = _summary_block(reference)
        cv_results["cnn_minus_reference_val_auc"] = (
            val_auc[0] - reference["cv_results"]["mean_val_auc"]
        )

    per_class = pd.DataFrame(
        {
            "class": classes,
            "n_recordings": labels.sum(axis=0).astype(int).to_numpy(),
            "n_primary": [int((manifest["primary_label"] == label).sum()) for label in classes],
            "oof_auc": oof_auc.per_class,
            "baseline_oof_auc": _per_class_oof_auc(baseline, classes),
        }
    )
    if reference is not None:
        per_class["reference_oof_auc"] = _per_class_oof_auc(reference, classes)
    for entry, path in zip(folds, oof_paths, strict=True):
        fold_oof = pd.read_csv(path, keep_default_na=False)
        fold_auc = birdclef_auc(
            labels.loc[fold_oof["filename"]].to_numpy(), fold_oof[classes].to_numpy()
        )
        per_class[f"fold_{entry['fold']}_auc"] = fold_auc.per_class
    log.info(
        "CV val_auc %.4f +- %.4f over %d fold(s); OOF %.4f; baseline %.4f; reference %s",
        val_auc[0],
        val_auc[1],
        len(folds),
        oof_auc.macro,
        baseline["cv_results"]["mean_val_auc"],
        "not run" if reference is None else f"{reference['cv_results']['mean_val_auc']:.4f}",
    )
    return cv_results, per_class


def write_aggregate(cv_results: Mapping, per_class: pd.DataFrame, cv_json, per_class_csv) -> None:
    write_json(cv_json, cv_results, sort_keys=False)
    write_table(per_class, per_class_csv)


# --------------------------------------------------------------------------------------------
# plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, out: str | Path) -> None:
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
    table = per_class.sort_values("oof_auc", na_position="first")
    height = max(3.0, 0.22 * len(table) + 1)
    figure, axis = plt.subplots(figsize=(7, height))
    positions = np.arange(len(table))
    bars = [
        ("oof_auc", "CNN (out of fold)", "tab:blue"),
        ("baseline_oof_auc", "baseline", "lightgray"),
    ]
    if "reference_oof_auc" in table:
        bars.append(("reference_oof_auc", "pretrained reference", "tab:orange"))
    bar_height = 0.8 / len(bars)
    for index, (column, label, colour) in enumerate(bars):
        offset = (index - (len(bars) - 1) / 2) * bar_height
        axis.barh(positions + offset, table[column], height=bar_height, label=label, color=colour)
    axis.set_yticks(positions, table["class"], fontsize=7)
    axis.set(xlabel="ROC-AUC", xlim=(0, 1), title="Per-class AUC")
    axis.axvline(0.5, color="black", linewidth=0.5)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(bars))
    _save(plt, figure, out)


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


# --------------------------------------------------------------------------------------------
# the report's first page


def _verdict(cnn: float, baseline: float, reference: float | None) -> str:
    """Whether the CNN learned, as an RST admonition."""
    if not cnn > baseline:
        return (
            ".. warning::\n\n"
            f"   **The CNN has not learned.** Its cross-validated AUC ({cnn:.3f}) does not beat "
            f"a logistic regression on band statistics ({baseline:.3f}). Do not use these "
            "models. With weakly labelled recordings, check that "
            "training.sampling.activity_power > 0 and training.normalization is denoised; "
            "train longer or from pretrained weights (model.weights).\n"
        )
    lead = f"The CNN beats the baseline by {cnn - baseline:+.3f}"
    if reference is None:
        return f".. note::\n\n   {lead}. The pretrained reference was not run.\n"
    if cnn > reference:
        return f".. note::\n\n   {lead} and the pretrained reference by {cnn - reference:+.3f}.\n"
    return (
        ".. note::\n\n"
        f"   {lead}, but stays {reference - cnn:.3f} below the pretrained reference: "
        "embeddings of a model trained on millions of recordings still know more than this "
        "one learned from these.\n"
    )


def _list_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """An RST list-table (and the blank line after it)."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return [*lines, ""]


def _ablation_lines(ablation: Mapping) -> list[str]:
    """The soundscape ablation (`soundscape_ablation.soundscape_ablation`) as RST: a row per
    round and hops_per_window, a column per post-processing; the submission's setting in bold."""
    results = ablation["results"]
    if not results:
        return []
    columns = list(dict.fromkeys(entry["post_processing"] for entry in results))
    configured = ablation["configured"]
    cells: dict[tuple[int, int], dict[str, str]] = {}
    speed: dict[tuple[int, int], float | None] = {}
    for entry in results:
        key = (entry["round"], entry["hops_per_window"])
        value = f"{entry['macro_auc']:.3f}"
        if all(entry[name] == configured[name] for name in configured):
            value = f"**{value}**"
        cells.setdefault(key, {})[entry["post_processing"]] = value
        speed[key] = entry["audio_s_per_s"]
    rows = [
        [
            f"round {round_index}",
            str(hops),
            *(cells[(round_index, hops)].get(column, "–") for column in columns),
            "–" if speed[(round_index, hops)] is None else f"{speed[(round_index, hops)]:.0f}",
        ]
        for round_index, hops in sorted(cells)
    ]
    header = ["model", "hops per window", *columns, "audio s / s"]
    return [
        "Test soundscapes by self-training round and post-processing: macro-AUC of each round's "
        f"fold ensemble (Keras, {ablation['threads']} thread(s); the submission's setting in "
        "bold). Post-processing costs nothing measurable; overlapping windows cost predictions "
        "(the last column: seconds of audio predicted per second).",
        "",
        *_list_table(header, rows),
        *(f"Not compared: {reason}." for reason in ablation.get("skipped", [])),
        "",
    ]


def results_summary(
    cv_results: Mapping,
    soundscape_scores: Mapping | None = None,
    soundscape_ablation: Mapping | None = None,
) -> str:
    """RST for the report's first page: CV and OOF macro-AUC of the CNN, the baseline and the
    reference per fold, the soundscape score (and its ablation over rounds and
    post-processing), and whether the CNN learned."""
    rounds = cv_results.get("rounds", [])
    last_round = f", {_round_name(rounds[-1])}" if len(rounds) > 1 else ""
    rows = [(f"CNN (EfficientNet-B0){last_round}", cv_results)]
    for entry in rounds[:-1]:
        rows.append(
            (
                f"CNN, {_round_name(entry)}",
                {
                    "cv_results": entry,
                    "individual_folds": {
                        fold: {"val_auc": auc} for fold, auc in entry["fold_val_auc"].items()
                    },
                },
            )
        )
    for key, name in (("baseline", "baseline"), ("reference", "pretrained reference")):
        if key in cv_results:
            rows.append((f"{name}: {cv_results[key].get('model', '')}", cv_results[key]))
    folds = sorted(
        {name for _, block in rows for name in block["individual_folds"]},
        key=lambda name: int(name.split("_")[-1]),
    )
    header = ["model", "CV mean ± std", "out of fold", *(name.replace("_", " ") for name in folds)]
    table = []
    for name, block in rows:
        summary = block["cv_results"]
        per_fold = [block["individual_folds"].get(fold, {}).get("val_auc") for fold in folds]
        table.append(
            [
                name,
                f"{summary['mean_val_auc']:.3f} ± {summary['std_val_auc']:.3f}",
                f"{summary['oof_val_auc']:.3f}",
                *("–" if value is None else f"{value:.3f}" for value in per_fold),
            ]
        )
    lines = [
        "Results summary",
        "---------------",
        "",
        "Macro ROC-AUC (the BirdCLEF metric), every model on the same cross-validation folds.",
        "",
        *_list_table(header, table),
    ]
    if soundscape_scores is not None:
        lines += [
            f"Test soundscapes (window labels): macro-AUC {soundscape_scores['macro_auc']:.3f} "
            f"over {soundscape_scores['windows']} windows, "
            f"{soundscape_scores['scored_classes']} classes scored.",
            "",
        ]
    if soundscape_ablation is not None:
        lines += _ablation_lines(soundscape_ablation)
    reference = cv_results.get("reference", {}).get("cv_results", {}).get("mean_val_auc")
    lines.append(
        _verdict(
            cv_results["cv_results"]["mean_val_auc"],
            cv_results["baseline"]["cv_results"]["mean_val_auc"],
            reference,
        )
    )
    return "\n".join(lines)
