"""The report's first page: the verdict first, one name per model, the chart, the tables."""

from __future__ import annotations

import base64

from dawnchorus.reporting.summary import results_summary


def _block(mean: float, folds: dict[int, float], model: str = "") -> dict:
    return {
        "model": model,
        "cv_results": {"mean_val_auc": mean, "std_val_auc": 0.01, "oof_val_auc": mean - 0.005},
        "individual_folds": {f"fold_{k}": {"fold": k, "val_auc": v} for k, v in folds.items()},
    }


def _cv_results(cnn: float, baseline: float, reference: float | None = None) -> dict:
    results = {
        **_block(cnn, {0: cnn + 0.01, 1: cnn - 0.01}),
        "baseline": _block(baseline, {0: baseline, 1: baseline}, "logistic regression"),
    }
    if reference is not None:
        results["reference"] = _block(
            reference, {0: reference, 1: reference}, "logistic regression (C=1) on BirdNET, sha256"
        )
    return results


def _blended(cnn: float, baseline: float, head: float, blend: float) -> dict:
    results = _cv_results(cnn, baseline, head)
    results["ensemble"] = {
        **_block(blend, {0: blend + 0.005, 1: blend - 0.005}, "weighted mean of logits"),
        "weights": {"cnn": 0.4, "head": 0.6},
        "members_cv": {
            "cnn": {"mean_val_auc": cnn, "oof_val_auc": cnn},
            "head": {"mean_val_auc": head, "oof_val_auc": head},
        },
    }
    return results


def _ablation(members: dict[str, float] | None = None) -> dict:
    """Two rounds x hops 1 and 2 x smoothing off / on, as soundscape_ablation writes them; with
    `members`, the head's and the blend's scores at round 1's settings."""
    results = []
    for round_index, hops, kernel, auc, speed in [
        (0, 1, [1.0], 0.853, 222.0),
        (0, 1, [0.25, 0.5, 0.25], 0.867, 222.0),
        (0, 2, [1.0], 0.880, 85.0),
        (0, 2, [0.25, 0.5, 0.25], 0.879, 85.0),
        (1, 1, [1.0], 0.879, 165.0),
        (1, 1, [0.25, 0.5, 0.25], 0.891, 165.0),
        (1, 2, [1.0], 0.885, 82.0),
        (1, 2, [0.25, 0.5, 0.25], 0.889, 82.0),
    ]:
        results.append(
            {
                "round": round_index,
                "hops_per_window": hops,
                "smoothing_kernel": kernel,
                "scale_by_top_windows": 0,
                "post_processing": "none" if kernel == [1.0] else f"smoothing {kernel}",
                "macro_auc": auc,
                "rows": 144,
                "audio_s_per_s": speed,
            }
        )
    configured = {
        "round": 1,
        "hops_per_window": 1,
        "smoothing_kernel": [0.25, 0.5, 0.25],
        "scale_by_top_windows": 0,
    }
    for member, auc in (members or {}).items():
        results.append({**results[5], "member": member, "macro_auc": auc, "audio_s_per_s": 60.0})
        configured["member"] = "blend"
    return {"threads": 2, "configured": configured, "skipped": [], "results": results}


def _first_paragraph(summary: str) -> str:
    return summary.split("Results\n=======\n\n")[1].split("\n\n")[0]


def test_the_first_page_opens_with_the_verdict_in_one_sentence():
    summary = results_summary(
        _blended(cnn=0.86, baseline=0.70, head=0.90, blend=0.915),
        {"macro_auc": 0.9104, "windows": 144, "scored_classes": 11},
        _ablation({"head": 0.80, "blend": 0.905}),
    )
    verdict = _first_paragraph(summary)
    # the submission's own score, then each member alone at the submission's settings (round 1,
    # no overlap, smoothing): the CNN's 0.891 of the ablation, the head's 0.800
    assert verdict.startswith(
        "The submission (the blend) scores **0.910** on the test soundscapes; "
        "the CNN alone 0.891, the BirdNET head alone 0.800. "
        "Cross-validated on the training recordings: "
        "the blend 0.915, the CNN 0.860, the BirdNET head 0.900, the baseline 0.700."
    )
    assert "weighs the CNN 40% and the BirdNET head 60%" in summary
    assert "+0.015 against the BirdNET head alone (0.900 on the same recordings)" in summary


def test_one_name_per_model_and_no_term_a_reader_cannot_act_on():
    results = _blended(cnn=0.86, baseline=0.70, head=0.90, blend=0.915)
    results["training_config"] = {"model": {"backbone": "small_cnn"}}
    summary = results_summary(
        results,
        {"macro_auc": 0.91, "windows": 144, "scored_classes": 11},
        _ablation({"head": 0.80, "blend": 0.905}),
    )
    models = summary.split("     - test soundscapes\n")[1].split("\n\n")[0]
    assert [row.split("\n")[0] for row in models.split("   * - ")[1:]] == [
        "blend",
        "CNN",
        "BirdNET head",
        "baseline",
    ]
    assert "a small CNN" in summary and "EfficientNet" not in summary  # the backbone that ran
    for jargon in ("reference", "logit", "nested", "hops", "sha256", "thread", " head +"):
        assert jargon not in summary, jargon


def test_without_a_blend_or_labelled_soundscapes_the_verdict_is_the_cnns_cv():
    summary = results_summary(_cv_results(0.85, 0.70))
    assert _first_paragraph(summary).startswith(
        "The submission (the CNN) scores **0.850** in cross-validation on the training "
        "recordings; the baseline 0.700. No test soundscapes with labels were scored."
    )
    assert "Test soundscapes by post-processing" not in summary and "blend" not in summary


def test_summary_lists_every_model_per_fold():
    summary = results_summary(_cv_results(0.912, 0.701, 0.899))
    folds = summary[summary.index("Scores per fold") :]
    for text in ("0.912 ± 0.010", "0.907", "0.922", "0.902", "0.701 ± 0.010", "0.899 ± 0.010"):
        assert text in folds
    assert "Warning" not in summary


def test_summary_warns_plainly_when_the_cnn_does_not_beat_the_baseline():
    summary = results_summary(_cv_results(0.535, 0.611, 0.740))
    assert "**Warning: the CNN has not learned.** Its cross-validated score (0.535)" in summary
    assert "has not learned" in results_summary(_cv_results(0.611, 0.611))
    assert "has not learned" not in results_summary(_cv_results(0.612, 0.611))


def test_summary_tabulates_the_soundscape_ablation_with_the_submissions_cell_in_bold():
    summary = results_summary(
        _cv_results(0.85, 0.70),
        {"macro_auc": 0.891, "windows": 144, "scored_classes": 11},
        _ablation(),
    )
    table = summary[summary.index("Test soundscapes by post-processing") :]
    rows = table.split("   * - ")[1:]
    assert [row.split("\n")[0] for row in rows] == [
        "model",
        *["CNN, round 1"] * 2,
        *["CNN, round 0"] * 2,
    ]
    assert [cell.strip() for cell in rows[0].split("     - ")[1:]] == [
        "windows overlap",
        "none",
        "smoothing [0.25, 0.5, 0.25]",
        "seconds of audio per second",
    ]
    assert [cell.strip() for cell in rows[1].split("     - ")[1:]] == [
        "no",
        "0.879",
        "**0.891**",
        "165",
    ]
    assert table.count("**") == 2  # one cell only
    assert rows[4].split("     - ")[1].strip() == "by 1/2" and "0.880" in rows[4]


def test_the_ablation_shows_the_blend_first_and_the_head():
    summary = results_summary(
        _cv_results(0.85, 0.70), None, _ablation({"head": 0.80, "blend": 0.905})
    )
    table = summary[summary.index("Test soundscapes by post-processing") :]
    rows = table.split("   * - ")[1:]
    assert [row.split("\n")[0] for row in rows[1:]] == [
        "blend",
        *["CNN, round 1"] * 2,
        *["CNN, round 0"] * 2,
        "BirdNET head",
    ]
    assert "**0.905**" in rows[1] and table.count("**") == 2
    assert "0.891" in rows[2] and "**0.891**" not in rows[2]


def test_summary_with_its_chart_is_valid_restructured_text(tmp_path):
    from docutils.core import publish_parts

    from dawnchorus.reporting.plots import plot_model_scores

    chart = tmp_path / "models.png"
    plot_model_scores([("blend", 0.9, 0.91), ("baseline", 0.7, None)], chart)
    html = publish_parts(
        results_summary(
            _cv_results(0.5, 0.6, 0.7),
            {"macro_auc": 0.5, "windows": 1, "scored_classes": 1},
            {**_ablation(), "skipped": ["hops_per_window 2: the models take 2 windows per input"]},
            chart=chart,
        ),
        writer="html",
        settings_overrides={"halt_level": 2},  # a warning in the markup fails the test
    )["html_body"]
    assert "<table" in html and "has not learned" in html
    assert "<strong>0.891</strong>" in html and "Not compared: hops_per_window 2" in html
    # the chart travels inside the page
    uri = html.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(uri) == chart.read_bytes()


def test_the_chart_has_a_bar_per_score_and_the_models_in_page_order():
    from dawnchorus.reporting.plots import _pyplot, model_scores_figure

    plt = _pyplot()
    scores = [("blend", 0.91, 0.905), ("CNN", 0.86, 0.871), ("baseline", 0.70, None)]
    figure = model_scores_figure(plt, scores)
    (axis,) = figure.axes
    assert len(axis.patches) == 5  # the baseline has no soundscape score
    labels = [tick.get_text() for tick in axis.get_yticklabels()]
    positions = list(axis.get_yticks())
    assert sorted(labels, key=lambda name: -positions[labels.index(name)]) == [
        "blend",
        "CNN",
        "baseline",
    ]
    widths = sorted(round(bar.get_width(), 3) for bar in axis.patches)
    assert widths == [0.7, 0.86, 0.871, 0.905, 0.91]
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [
        "cross-validated",
        "test soundscapes",
    ]
    plt.close(figure)


def test_summary_shows_each_self_training_round_beside_the_last():
    results = _cv_results(0.85, 0.70, 0.90)
    results["rounds"] = [
        {
            "round": 0,
            "mean_val_auc": 0.811,
            "std_val_auc": 0.02,
            "oof_val_auc": 0.805,
            "fold_val_auc": {"fold_0": 0.792, "fold_1": 0.830},
        },
        {
            "round": 1,
            "mean_val_auc": 0.85,
            "std_val_auc": 0.01,
            "oof_val_auc": 0.845,
            "fold_val_auc": {"fold_0": 0.86, "fold_1": 0.84},
        },
    ]
    results["training_config"] = {"model": {"backbone": "efficientnet_b0"}}
    summary = results_summary(results)
    assert "EfficientNet-B0 trained on these recordings' spectrograms, self-training round 1" in (
        summary
    )
    assert "CNN, round 0 (labelled recordings only)" in summary
    for text in ("0.811 ± 0.020", "0.805", "0.792", "0.830"):
        assert text in summary
    # the verdict judges the models the workflow delivers: the last round's
    assert "(the CNN) scores **0.850**" in _first_paragraph(summary)
    one_round = {**_cv_results(0.85, 0.70), "rounds": results["rounds"][1:]}
    assert "self-training round" not in results_summary(one_round)
    # a round that mixed in no pseudo-labelled window (no train soundscapes) is not called one
    restart = {
        **results,
        "rounds": [results["rounds"][0], {**results["rounds"][1], "pseudo_windows": 0}],
    }
    summary = results_summary(restart)
    assert "round 1 (a warm restart: no pseudo-labelled windows)" in summary
    assert "self-training round" not in summary


def test_per_class_legend_covers_neither_the_bars_nor_the_axis_label():
    import numpy as np
    import pandas as pd

    from dawnchorus.reporting.plots import PER_CLASS_BARS, _pyplot, per_class_auc_figure

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"class": [f"bird{i}" for i in range(12)]})
    for column, _, _ in PER_CLASS_BARS:
        table[column] = rng.uniform(0.4, 1.0, len(table))
    plt = _pyplot()
    figure = per_class_auc_figure(plt, table)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [bar[1] for bar in PER_CLASS_BARS]
    box = legend.get_window_extent(renderer)
    (axis,) = figure.axes
    assert not box.overlaps(axis.get_window_extent(renderer))
    assert not box.overlaps(axis.xaxis.label.get_window_extent(renderer))
    plt.close(figure)
