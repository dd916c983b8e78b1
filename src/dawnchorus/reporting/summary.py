"""The report's first page (rule summary): the verdict in one plain sentence, a chart of the
models, what each model is, and the technical tables below (scores per fold, the test
soundscapes by post-processing).

One name per model everywhere on the page: the blend, the CNN, the BirdNET head (cv_results'
`reference` block and the blend's `head` member are the same model) and the baseline.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dawnchorus.reporting.aggregate import round_name

MODEL_NAMES = {"blend": "blend", "cnn": "CNN", "head": "BirdNET head", "baseline": "baseline"}
_PAGE_ORDER = ("blend", "cnn", "head", "baseline")
_BACKBONES = {"efficientnet_b0": "EfficientNet-B0", "small_cnn": "a small CNN (smoke runs)"}


@dataclass(frozen=True)
class ModelScore:
    """One model's macro ROC-AUC: cross-validated (mean over folds) and on the test
    soundscapes (None where it was not scored there)."""

    model: str  # a key of MODEL_NAMES
    cv: float
    soundscapes: float | None


def submission_model(cv_results: Mapping) -> str:
    """The model the submission and the export predict with."""
    return "blend" if "ensemble" in cv_results else "cnn"


def _ablation_entries(ablation: Mapping) -> list[dict]:
    """The ablation's results, each with its member (ablations written before the blend have
    none: the CNN's)."""
    return [{"member": "cnn", **entry} for entry in ablation["results"]]


def _ablation_score(ablation: Mapping, member: str) -> float | None:
    """`member`'s test-soundscape score in the ablation at the submission's settings (its
    post-processing; for the CNN also its round and window step)."""
    configured = ablation["configured"]
    wanted = {
        "smoothing_kernel": configured["smoothing_kernel"],
        "scale_by_top_windows": configured["scale_by_top_windows"],
    }
    if member != "head":  # the head has one window step and no rounds
        wanted |= {"round": configured["round"], "hops_per_window": configured["hops_per_window"]}
    for entry in _ablation_entries(ablation):
        if entry["member"] == member and all(entry[key] == value for key, value in wanted.items()):
            return entry["macro_auc"]
    return None


def model_scores(
    cv_results: Mapping,
    soundscape_scores: Mapping | None = None,
    soundscape_ablation: Mapping | None = None,
) -> list[ModelScore]:
    """Every model that ran, the submission's first: its soundscape score is the submission's
    (soundscape_scores.json), the others' come from the ablation at the submission's settings."""
    cv = {"cnn": cv_results["cv_results"]["mean_val_auc"]}
    for model, key in (("blend", "ensemble"), ("head", "reference"), ("baseline", "baseline")):
        if key in cv_results:
            cv[model] = cv_results[key]["cv_results"]["mean_val_auc"]
    submission = submission_model(cv_results)
    soundscapes: dict[str, float | None] = {model: None for model in cv}
    if soundscape_ablation is not None:
        for model in ("blend", "cnn", "head"):
            if model in cv:
                soundscapes[model] = _ablation_score(soundscape_ablation, model)
    if soundscape_scores is not None:
        soundscapes[submission] = soundscape_scores["macro_auc"]
    order = [submission, *(model for model in _PAGE_ORDER if model != submission and model in cv)]
    return [ModelScore(model, cv[model], soundscapes[model]) for model in order]


def _listing(scores: Sequence[tuple[str, float]], alone: bool = False) -> str:
    word = " alone" if alone else ""
    return ", ".join(f"the {MODEL_NAMES[model]}{word} {value:.3f}" for model, value in scores)


def verdict(models: Sequence[ModelScore]) -> str:
    """The page's first paragraph: what the submission scores, beside each other model."""
    submission, others = models[0], models[1:]
    opening = f"The submission (the {MODEL_NAMES[submission.model]}) scores"
    if submission.soundscapes is not None:
        alone = [
            (model.model, model.soundscapes) for model in others if model.soundscapes is not None
        ]
        sentences = [
            f"{opening} **{submission.soundscapes:.3f}** on the test soundscapes"
            + (f"; {_listing(alone, alone=True)}." if alone else "."),
            "Cross-validated on the training recordings: "
            f"{_listing([(model.model, model.cv) for model in models])}.",
        ]
    else:
        sentences = [
            f"{opening} **{submission.cv:.3f}** in cross-validation on the training recordings; "
            f"{_listing([(model.model, model.cv) for model in others])}.",
            "No test soundscapes with labels were scored.",
        ]
    sentences.append(
        "Scores are macro ROC-AUC, the BirdCLEF metric (0.5 is chance, 1.0 ranks every call of "
        "every species above its absences), every model on the same folds."
    )
    return " ".join(sentences)


def _not_learned(cnn: float, baseline: float) -> list[str]:
    """A warning when the CNN does not beat the baseline (its models must not be used)."""
    if cnn > baseline:
        return []
    return [
        f"**Warning: the CNN has not learned.** Its cross-validated score ({cnn:.3f}) does not "
        f"beat the baseline's ({baseline:.3f}). Do not use these models. With weakly labelled "
        "recordings, check that training.sampling.activity_power > 0 and "
        "training.normalization is denoised; train longer or from pretrained weights "
        "(model.weights).",
        "",
    ]


def _blend_sentence(ensemble: Mapping) -> str:
    """How the blend weighs its members, and what it adds over the better one."""
    members = ensemble["members_cv"]
    best = max(members, key=lambda name: members[name]["mean_val_auc"])
    gain = ensemble["cv_results"]["mean_val_auc"] - members[best]["mean_val_auc"]
    total = sum(ensemble["weights"].values())
    weights = " and ".join(
        f"the {MODEL_NAMES[name]} {weight / total:.0%}"
        for name, weight in ensemble["weights"].items()
    )
    return (
        f"The blend weighs {weights}, fitted on other recordings than those it is scored on; "
        f"there it scores {gain:+.3f} against the {MODEL_NAMES[best]} alone "
        f"({members[best]['mean_val_auc']:.3f} on the same recordings)."
    )


def _what_each_model_is(cv_results: Mapping) -> dict[str, str]:
    backbone = cv_results.get("training_config", {}).get("model", {}).get("backbone")
    rounds = cv_results.get("rounds", [])
    cnn = f"{_BACKBONES.get(backbone, 'a CNN')} trained on these recordings' spectrograms"
    if len(rounds) > 1:
        cnn += f", {round_name(rounds[-1])}"
    return {
        "blend": "the CNN and the BirdNET head combined (the submission's model)",
        "cnn": cnn,
        "head": "a classifier on what BirdNET V2.4 hears in these recordings",
        "baseline": "a linear classifier on each recording's loudness per frequency band",
    }


def _list_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """An RST list-table (and the blank line after it)."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return [*lines, ""]


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _fold_rows(cv_results: Mapping) -> list[tuple[str, Mapping]]:
    """(name, block with cv_results and individual_folds) per model, the CNN's earlier
    self-training rounds after the CNN."""
    rows: list[tuple[str, Mapping]] = []
    if "ensemble" in cv_results:
        rows.append((MODEL_NAMES["blend"], cv_results["ensemble"]))
    rows.append((MODEL_NAMES["cnn"], cv_results))
    for entry in cv_results.get("rounds", [])[:-1]:
        block = {
            "cv_results": entry,
            "individual_folds": {
                fold: {"val_auc": auc} for fold, auc in entry["fold_val_auc"].items()
            },
        }
        rows.append((f"CNN, {round_name(entry)}", block))
    for model, key in (("head", "reference"), ("baseline", "baseline")):
        if key in cv_results:
            rows.append((MODEL_NAMES[model], cv_results[key]))
    return rows


def _fold_lines(cv_results: Mapping) -> list[str]:
    rows = _fold_rows(cv_results)
    folds = sorted(
        {name for _, block in rows for name in block["individual_folds"]},
        key=lambda name: int(name.split("_")[-1]),
    )
    table = []
    for name, block in rows:
        summary = block["cv_results"]
        per_fold = [block["individual_folds"].get(fold, {}).get("val_auc") for fold in folds]
        table.append(
            [
                name,
                f"{summary['mean_val_auc']:.3f} ± {summary['std_val_auc']:.3f}",
                f"{summary['oof_val_auc']:.3f}",
                *(_score(value) for value in per_fold),
            ]
        )
    header = ["model", "mean ± std", "pooled", *(name.replace("_", " ") for name in folds)]
    return [
        "Scores per fold",
        "~~~~~~~~~~~~~~~",
        "",
        "Each model is trained without one fold of the recordings and scored on it; the mean and "
        "standard deviation over folds, and the score of all held-out predictions pooled.",
        "",
        *_list_table(header, table),
    ]


def _ablation_model(member: str, round_index: int, rounds: int) -> str:
    if member == "cnn" and rounds > 1:
        return f"CNN, round {round_index}"
    return MODEL_NAMES[member]


def _ablation_lines(ablation: Mapping) -> list[str]:
    """The soundscape ablation (`soundscape_ablation.soundscape_ablation`): a row per model and
    window step, a column per post-processing; the submission's setting in bold."""
    results = ablation["results"]
    if not results:
        return []
    columns = list(dict.fromkeys(entry["post_processing"] for entry in results))
    configured = {"member": "cnn", **ablation["configured"]}
    order = {"blend": 0, "cnn": 1, "head": 2}
    cells: dict[tuple[int, int, int, str], dict[str, str]] = {}
    speed: dict[tuple[int, int, int, str], float | None] = {}
    for entry in _ablation_entries(ablation):
        member = entry["member"]
        key = (order[member], -entry["round"], entry["hops_per_window"], member)
        value = f"{entry['macro_auc']:.3f}"
        if all(entry[name] == configured[name] for name in configured):
            value = f"**{value}**"
        cells.setdefault(key, {})[entry["post_processing"]] = value
        speed[key] = entry["audio_s_per_s"]
    rounds = len({entry["round"] for entry in results})
    rows = [
        [
            _ablation_model(key[3], -key[1], rounds),
            "no" if key[2] == 1 else f"by {key[2] - 1}/{key[2]}",
            *(cells[key].get(column, "–") for column in columns),
            "–" if speed[key] is None else f"{speed[key]:.0f}",
        ]
        for key in sorted(cells)
    ]
    header = ["model", "windows overlap", *columns, "seconds of audio per second"]
    return [
        "Test soundscapes by post-processing",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        "",
        "Each model on the test soundscapes with windows side by side or overlapping, and each "
        "post-processing of their scores; the submission's setting in bold, the speed of "
        "prediction on this machine in the last column.",
        "",
        *_list_table(header, rows),
        *(f"Not compared: {reason}." for reason in ablation.get("skipped", [])),
        "",
    ]


def results_summary(
    cv_results: Mapping,
    soundscape_scores: Mapping | None = None,
    soundscape_ablation: Mapping | None = None,
    chart: str | Path | None = None,
) -> str:
    """The report's first page as RST: the verdict, the chart (`chart`, a PNG file), a table
    of what each model is, then the technical tables."""
    models = model_scores(cv_results, soundscape_scores, soundscape_ablation)
    described = _what_each_model_is(cv_results)
    lines = [
        "Results",
        "=======",
        "",
        verdict(models),
        "",
        *_not_learned(
            cv_results["cv_results"]["mean_val_auc"],
            cv_results["baseline"]["cv_results"]["mean_val_auc"],
        ),
    ]
    if chart is not None:
        # the image inside the page (report.html is one file that travels alone), the URI over
        # several lines: docutils joins them and refuses a line of more than 10,000 characters
        encoded = base64.encodebytes(Path(chart).read_bytes()).decode().split()
        lines += [
            ".. image:: data:image/png;base64,",
            *(f"   {piece}" for piece in encoded),
            "   :alt: the models' scores",
            "   :width: 100%",
            "",
        ]
    table = [
        [
            MODEL_NAMES[model.model],
            described[model.model],
            _score(model.cv),
            _score(model.soundscapes),
        ]
        for model in models
    ]
    lines += _list_table(["model", "what it is", "cross-validated", "test soundscapes"], table)
    if "ensemble" in cv_results:
        lines += [_blend_sentence(cv_results["ensemble"]), ""]
    lines += ["Details", "-------", "", *_fold_lines(cv_results)]
    if soundscape_scores is not None:
        lines += [
            f"The submission's test-soundscape score is over {soundscape_scores['windows']} "
            f"windows of 5 s, {soundscape_scores['scored_classes']} species present in them.",
            "",
        ]
    if soundscape_ablation is not None:
        lines += _ablation_lines(soundscape_ablation)
    return "\n".join(lines)
