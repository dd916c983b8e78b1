"""The report's first page (rule summary): CV and OOF macro-AUC of the CNN, the blend, the
baseline and the reference per fold, the soundscape scores, and whether the CNN learned."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dawnchorus.reporting.aggregate import round_name


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


_MEMBER_ORDER = {"cnn": 0, "head": 1, "blend": 2}


def _ablation_model(member: str, round_index: int) -> str:
    if member == "head":
        return "BirdNET head"
    if member == "blend":
        return f"blend (CNN round {round_index} + head)"
    return f"CNN round {round_index}"


def _ablation_lines(ablation: Mapping) -> list[str]:
    """The soundscape ablation (`soundscape_ablation.soundscape_ablation`) as RST: a row per
    model (each round's CNN, the head, the blend) and hops_per_window, a column per
    post-processing; the submission's setting in bold."""
    results = ablation["results"]
    if not results:
        return []
    columns = list(dict.fromkeys(entry["post_processing"] for entry in results))
    configured = {"member": "cnn", **ablation["configured"]}
    cells: dict[tuple[int, int, int, str], dict[str, str]] = {}
    speed: dict[tuple[int, int, int, str], float | None] = {}
    for entry in results:
        entry = {"member": "cnn", **entry}  # ablations written before the blend: the CNN's
        member = entry["member"]
        key = (_MEMBER_ORDER[member], entry["round"], entry["hops_per_window"], member)
        value = f"{entry['macro_auc']:.3f}"
        if all(entry[name] == configured[name] for name in configured):
            value = f"**{value}**"
        cells.setdefault(key, {})[entry["post_processing"]] = value
        speed[key] = entry["audio_s_per_s"]
    rows = [
        [
            _ablation_model(key[3], key[1]),
            str(key[2]),
            *(cells[key].get(column, "–") for column in columns),
            "–" if speed[key] is None else f"{speed[key]:.0f}",
        ]
        for key in sorted(cells)
    ]
    header = ["model", "hops per window", *columns, "audio s / s"]
    return [
        "Test soundscapes by model and post-processing: macro-AUC of each self-training round's "
        "fold ensemble (Keras, "
        f"{ablation['threads']} thread(s)), and where the workflow blends, of the BirdNET head "
        "and the blend; the submission's setting in bold. Post-processing costs nothing "
        "measurable; overlapping windows cost predictions (the last column: seconds of audio "
        "predicted per second).",
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
    last_round = f", {round_name(rounds[-1])}" if len(rounds) > 1 else ""
    rows = [(f"CNN (EfficientNet-B0){last_round}", cv_results)]
    for entry in rounds[:-1]:
        rows.append(
            (
                f"CNN, {round_name(entry)}",
                {
                    "cv_results": entry,
                    "individual_folds": {
                        fold: {"val_auc": auc} for fold, auc in entry["fold_val_auc"].items()
                    },
                },
            )
        )
    members = (
        ("ensemble", "blend (nested CV)"),
        ("baseline", "baseline"),
        ("reference", "pretrained reference"),
    )
    for key, name in members:
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
    if "ensemble" in cv_results:
        lines.append(_blend_note(cv_results["ensemble"]))
    return "\n".join(lines)


def _blend_note(ensemble: Mapping) -> str:
    """What predicts, and what the blend adds over its best member on the same rows."""
    members = ensemble["members_cv"]
    best = max(members, key=lambda name: members[name]["mean_val_auc"])
    gain = ensemble["cv_results"]["mean_val_auc"] - members[best]["mean_val_auc"]
    weights = ", ".join(f"{name} {weight:g}" for name, weight in ensemble["weights"].items())
    return (
        ".. note::\n\n"
        f"   The submission and the export predict with the blend (weights {weights}). Scored "
        f"out of fold with weights fitted without the fold, it is {gain:+.3f} over its best "
        f"member alone ({best}, {members[best]['mean_val_auc']:.3f} on the same recordings).\n"
    )
