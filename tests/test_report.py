"""The report's first page: every model's scores, and whether the CNN learned."""

from __future__ import annotations

import pytest

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
        results["reference"] = _block(reference, {0: reference, 1: reference}, "BirdNET")
    return results


def test_summary_lists_every_model_per_fold_and_the_soundscape_score():
    scores = {"macro_auc": 0.8771, "windows": 144, "scored_classes": 11}
    summary = results_summary(_cv_results(0.912, 0.701, 0.899), scores)
    assert "CNN (EfficientNet-B0)" in summary
    assert "baseline: logistic regression" in summary and "pretrained reference: BirdNET" in summary
    for text in ("0.912 ± 0.010", "0.907", "0.922", "0.902", "0.701 ± 0.010", "0.899 ± 0.010"):
        assert text in summary
    assert "macro-AUC 0.877 over 144 windows, 11 classes scored" in summary
    assert "beats the baseline by +0.211 and the pretrained reference by +0.013" in summary
    assert ".. warning::" not in summary


def test_summary_warns_plainly_when_the_cnn_does_not_beat_the_baseline():
    summary = results_summary(_cv_results(0.535, 0.611, 0.740))
    assert ".. warning::" in summary and "The CNN has not learned" in summary
    assert "0.535" in summary and "0.611" in summary
    assert "Test soundscapes" not in summary  # no labels, no score
    assert "has not learned" in results_summary(_cv_results(0.611, 0.611))


@pytest.mark.parametrize(
    ("reference", "expected"),
    [(None, "The pretrained reference was not run"), (0.95, "below the pretrained reference")],
)
def test_summary_says_where_the_cnn_stands_against_the_reference(reference, expected):
    summary = results_summary(_cv_results(0.85, 0.70, reference))
    assert expected in summary and ".. warning::" not in summary
    assert ("pretrained reference:" in summary) == (reference is not None)


def _ablation() -> dict:
    """Two rounds x hops 1 and 2 x smoothing off / on, as soundscape_ablation writes them."""
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
    return {
        "threads": 2,
        "configured": {
            "round": 1,
            "hops_per_window": 1,
            "smoothing_kernel": [0.25, 0.5, 0.25],
            "scale_by_top_windows": 0,
        },
        "skipped": [],
        "results": results,
    }


def test_summary_tabulates_the_soundscape_ablation_with_the_submissions_cell_in_bold():
    summary = results_summary(
        _cv_results(0.85, 0.70),
        {"macro_auc": 0.891, "windows": 144, "scored_classes": 11},
        _ablation(),
    )
    table = summary[summary.index("by model and post-processing") :]
    rows = table.split("   * - ")[1:]
    assert [row.split("\n")[0] for row in rows] == [
        "model",
        *["CNN round 0"] * 2,
        *["CNN round 1"] * 2,
    ]
    assert [cell.strip() for cell in rows[0].split("     - ")[1:]] == [
        "hops per window",
        "none",
        "smoothing [0.25, 0.5, 0.25]",
        "audio s / s",
    ]
    assert [cell.strip() for cell in rows[3].split("     - ")[1:]] == [
        "1",
        "0.879",
        "**0.891**",
        "165",
    ]
    assert table.count("**") == 2  # one cell only
    assert "0.880" in rows[2] and "85" in rows[2]


def test_the_ablation_shows_the_head_and_the_blend_with_the_blend_in_bold():
    ablation = _ablation()
    for entry in ablation["results"]:
        entry["member"] = "cnn"
    for member, auc in (("head", 0.80), ("blend", 0.905)):
        ablation["results"].append(
            {
                **ablation["results"][5],
                "member": member,
                "macro_auc": auc,
                "audio_s_per_s": 60.0,
            }
        )
    ablation["configured"]["member"] = "blend"
    summary = results_summary(_cv_results(0.85, 0.70), None, ablation)
    table = summary[summary.index("by model and post-processing") :]
    rows = table.split("   * - ")[1:]
    assert [row.split("\n")[0] for row in rows[-2:]] == [
        "BirdNET head",
        "blend (CNN round 1 + head)",
    ]
    assert "**0.905**" in rows[-1] and table.count("**") == 2
    assert "0.891" in rows[3] and "**0.891**" not in rows[3]


def test_summary_is_valid_restructured_text():
    from docutils.core import publish_parts

    html = publish_parts(
        results_summary(
            _cv_results(0.5, 0.6, 0.7),
            {"macro_auc": 0.5, "windows": 1, "scored_classes": 1},
            {**_ablation(), "skipped": ["hops_per_window 2: the models take 2 windows per input"]},
        ),
        writer="html",
        settings_overrides={"halt_level": 2},  # a warning in the markup fails the test
    )["html_body"]
    assert "<table" in html and "has not learned" in html
    assert "<strong>0.891</strong>" in html and "Not compared: hops_per_window 2" in html


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
    summary = results_summary(results)
    assert "CNN (EfficientNet-B0), self-training round 1" in summary
    assert "CNN, round 0 (labelled recordings only)" in summary
    for text in ("0.811 ± 0.020", "0.805", "0.792", "0.830"):
        assert text in summary
    # the verdict judges the models the workflow delivers: the last round's
    assert "beats the baseline by +0.150" in summary
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


def test_summary_shows_the_blend_and_what_it_adds_over_its_best_member():
    results = _cv_results(0.86, 0.70, 0.90)
    results["ensemble"] = {
        **_block(0.915, {0: 0.92, 1: 0.91}, "blend of cnn and head"),
        "weights": {"cnn": 0.4, "head": 0.6},
        "members_cv": {
            "cnn": {"mean_val_auc": 0.86, "oof_val_auc": 0.85},
            "head": {"mean_val_auc": 0.90, "oof_val_auc": 0.89},
        },
    }
    summary = results_summary(results)
    assert "blend (nested CV): blend of cnn and head" in summary
    assert "0.915 ± 0.010" in summary
    assert "weights cnn 0.4, head 0.6" in summary
    assert "+0.015 over its best member alone (head, 0.900" in summary


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
