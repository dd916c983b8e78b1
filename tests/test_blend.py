"""The blend: its arithmetic, weights fitted out of fold (nested), the rule's files, the head as a
window model, and the blend predicting soundscapes (a tiny BirdNET-shaped model stands in for
BirdNET; the real one is tested in test_reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import build_tflite, make_head, save_fold_model, taxonomy_classes

from dawnchorus.config import ConfigError, load_config
from dawnchorus.data.folds import load_labelled_clips
from dawnchorus.inference.engines import PredictionError
from dawnchorus.inference.members import Blend, load_blend
from dawnchorus.inference.recordings import FilePrediction
from dawnchorus.inference.submission import assemble_submission, soundscape_submission
from dawnchorus.learning.blend import (
    BlendError,
    blend_probabilities,
    blend_weights_file,
    fit_blend,
    fit_weights,
    nested_blend,
    weight_grid,
)
from dawnchorus.pretrained.embeddings import EmbeddingModel
from dawnchorus.pretrained.head import HeadEnsemble, HeadError

SETTINGS = {
    "batch_size": 8,
    "min_last_window_s": 1.0,
    "fallback_probability": 0.0,
    "fallback_duration_s": 60,
    "smoothing_kernel": [1.0],
    "scale_by_top_windows": 0,
    "hops_per_window": 1,
}

# --------------------------------------------------------------------------------------------
# arithmetic


def test_weight_grid_covers_the_simplex_with_its_corners():
    grid = weight_grid(["cnn", "head"], 0.25)
    assert [w["cnn"] for w in grid] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(sum(w.values()) == pytest.approx(1) for w in grid)
    assert len(weight_grid(["a", "b", "c"], 0.5)) == 6
    with pytest.raises(BlendError, match="does not divide 1"):
        weight_grid(["a", "b"], 0.3)


def test_blend_is_a_weighted_mean_of_logits_and_a_missing_member_leaves_the_other():
    cnn = np.array([[0.9, 0.2], [0.6, 0.5], [0.3, 0.3]], dtype=np.float32)
    head = np.array([[0.5, 0.8], [np.nan, np.nan], [0.7, 0.1]], dtype=np.float32)
    blended = blend_probabilities({"cnn": cnn, "head": head}, {"cnn": 0.5, "head": 0.5}, "logit")

    def logit(p):
        return np.log(p / (1 - p))

    expected = 1 / (1 + np.exp(-(logit(cnn[0]) + logit(head[0])) / 2))
    np.testing.assert_allclose(blended[0], expected, rtol=1e-5)
    np.testing.assert_allclose(blended[1], cnn[1], rtol=1e-5)  # the head has no row here
    # probability space: the plain weighted mean
    blended = blend_probabilities(
        {"cnn": cnn, "head": head}, {"cnn": 0.25, "head": 0.75}, "probability"
    )
    np.testing.assert_allclose(blended[2], 0.25 * cnn[2] + 0.75 * head[2], rtol=1e-5)
    # the only member present has weight 0: its own rows, not NaN or zero
    only = blend_probabilities({"cnn": cnn, "head": head}, {"cnn": 0.0, "head": 1.0}, "logit")
    np.testing.assert_allclose(only[1], cnn[1], rtol=1e-5)


def synthetic_members(n=240, n_classes=6, seed=0):
    """Labels, folds, an informative member and a weaker one (noisier view of the same labels)."""
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=(n, n_classes)) < 0.25).astype(np.float32)
    folds = np.arange(n) % 4

    def member(noise):
        logits = 2.0 * (labels - 0.5) + noise * rng.standard_normal(labels.shape)
        return (1 / (1 + np.exp(-logits))).astype(np.float32)

    return labels, folds, member(1.0), member(4.0)


def test_weights_favour_the_better_member_and_a_blend_of_two_views_beats_each():
    labels, _, good, weak = synthetic_members()
    weights, score = fit_weights({"cnn": good, "head": weak}, labels, "logit", 0.05)
    assert weights["cnn"] > weights["head"]
    from dawnchorus.learning.metrics import birdclef_auc

    assert score >= birdclef_auc(labels, good).macro
    # two equally good, independent views: the blend is near the middle and beats both
    labels, _, a, _ = synthetic_members(seed=2)
    rng = np.random.default_rng(3)
    b = (1 / (1 + np.exp(-(2.0 * (labels - 0.5) + rng.standard_normal(labels.shape))))).astype(
        np.float32
    )
    weights, score = fit_weights({"cnn": a, "head": b}, labels, "logit", 0.05)
    assert 0.3 <= weights["cnn"] <= 0.7
    assert score > max(birdclef_auc(labels, a).macro, birdclef_auc(labels, b).macro) + 0.01


def test_nested_weights_for_a_fold_never_see_its_labels():
    """The weak member is perfect on fold 0 alone: fitted with fold 0 it would win there;
    fitted without it (nested), fold 0's weights still favour the member that is good
    everywhere else."""
    labels, folds, good, weak = synthetic_members()
    leak = weak.copy()
    leak[folds == 0] = labels[folds == 0]
    result = nested_blend({"cnn": good, "head": leak}, labels, folds, [0, 1, 2, 3], "logit", 0.05)
    assert result["per_fold"]["fold_0"]["weights"]["cnn"] > 0.5
    assert result["oof"].shape == labels.shape and result["covered"].all()
    # the weights the blend predicts with saw every fold, fold 0's perfect rows included
    assert result["weights"]["head"] > result["per_fold"]["fold_0"]["weights"]["head"]
    # a single fold (debug runs): nothing to fit fold 0's weights on, so equal weights
    single = nested_blend({"cnn": good, "head": weak}, labels, folds, [0], "logit", 0.05)
    assert single["per_fold"]["fold_0"]["weights"] == {"cnn": 0.5, "head": 0.5}


@pytest.fixture
def member_files(tmp_path, tiny_prepared):
    """OOF files of two members in the rule's layout: the CNN per fold, the head in one file
    that lacks one recording (as if BirdNET could not read it)."""
    clips = load_labelled_clips(tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)
    rng = np.random.default_rng(0)

    def table(noise, rows):
        logits = 2.0 * (clips.labels[rows] - 0.5) + noise * rng.standard_normal((len(rows), 6))
        frame = pd.DataFrame(1 / (1 + np.exp(-logits)), columns=clips.classes)
        frame.insert(0, "fold", clips.folds[rows])
        frame.insert(0, "filename", [clips.filenames[row] for row in rows])
        return frame

    cnn_files = []
    for fold in range(5):
        path = tmp_path / f"cnn_fold_{fold}.csv"
        table(1.5, np.flatnonzero(clips.folds == fold)).to_csv(path, index=False)
        cnn_files.append(str(path))
    head_file = tmp_path / "head.csv"
    table(1.5, np.arange(1, len(clips.filenames))).to_csv(head_file, index=False)
    return {"cnn": cnn_files, "head": [str(head_file)]}, clips


def test_fit_blend_writes_the_schema_the_aggregate_and_predict_read(tiny_prepared, member_files):
    files, clips = member_files
    prepared = (tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)
    descriptions = {"cnn": "the CNN", "head": "the head"}
    metrics, weights, oof = fit_blend(files, *prepared, range(5), "logit", 0.1, descriptions)
    assert set(metrics["cv_results"]) == {"mean_val_auc", "std_val_auc", "oof_val_auc"}
    assert set(metrics["members_cv"]) == {"cnn", "head"}
    assert sorted(metrics["individual_folds"]) == [f"fold_{k}" for k in range(5)]
    assert weights["members"] == ["cnn", "head"] and sorted(weights["fold_weights"]) == list(
        map(str, range(5))
    )
    assert sum(weights["weights"].values()) == pytest.approx(1)
    # every recording a member predicted is in the blend's OOF, the one the head lacks too
    assert sorted(oof["filename"]) == sorted(clips.filenames)
    assert oof.columns.tolist() == ["filename", "fold", *clips.classes]
    best = max(entry["mean_val_auc"] for entry in metrics["members_cv"].values())
    assert metrics["cv_results"]["mean_val_auc"] > best - 0.05

    # a member of other classes is named
    wrong = pd.read_csv(files["head"][0]).rename(columns={clips.classes[0]: "otherbird"})
    wrong.to_csv(files["head"][0], index=False)
    with pytest.raises(BlendError, match="member 'head' predicts"):
        fit_blend(files, *prepared, range(5), "logit", 0.1, descriptions)


# --------------------------------------------------------------------------------------------
# the head as a window model, and the blend predicting soundscapes


@pytest.fixture(scope="module")
def tiny_birdnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("birdnet") / "tiny_birdnet.tflite"
    build_tflite(path)
    return path


@pytest.fixture(scope="module")
def blend_parts(tmp_path_factory, tiny_demo, tiny_birdnet):
    folder = tmp_path_factory.mktemp("blend")
    classes = taxonomy_classes(tiny_demo)
    cnn = [save_fold_model(folder / f"fold_{k}.keras", classes, seed=k) for k in range(2)]
    # the heads hear rows as the default config does: a grid of windows every 2.5 s
    heads = [
        make_head(folder / f"head_{k}.npz", classes, tiny_birdnet, k, k, hop_s=2.5)
        for k in range(2)
    ]
    weights = folder / "weights.json"
    blend = blend_weights_file({"cnn": 0.6, "head": 0.4}, "logit", classes)
    weights.write_text(json.dumps(blend))
    return {"cnn": cnn, "heads": heads, "model": tiny_birdnet, "weights": weights}


@pytest.mark.training
def test_the_blend_predicts_every_row_from_both_members(tiny_demo, blend_parts):
    soundscapes = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    classes = taxonomy_classes(tiny_demo)
    parts = blend_parts
    blend = load_blend(parts["cnn"], parts["heads"], parts["model"], parts["weights"])
    assert blend.head is not None and "a blend (logits, weights cnn 0.6, head 0.4)" in (
        blend.describe()
    )
    blended, problems = soundscape_submission(soundscapes, blend, classes, SETTINGS)
    alone, _ = soundscape_submission(soundscapes, Blend(blend.cnn), classes, SETTINGS)
    assert problems.empty
    assert blended["row_id"].tolist() == alone["row_id"].tolist()
    assert len(blended) == 12 * len(soundscapes)
    # the head's rows, from BirdNET windows every 2.5 s, move every row
    head_rows, error = blend.head.rows(soundscapes[0], blend.params, 1.0)
    assert error is None and head_rows.shape == (12, len(classes))
    cnn_rows = alone[classes].to_numpy()[:12]
    expected = blend_probabilities(
        {"cnn": cnn_rows, "head": head_rows}, {"cnn": 0.6, "head": 0.4}, "logit"
    )
    np.testing.assert_allclose(blended[classes].to_numpy()[:12], expected, atol=1e-5)
    assert not np.allclose(expected, cnn_rows, atol=1e-3)


def test_a_soundscape_one_member_cannot_read_keeps_the_other_and_is_a_problem(blend_parts):
    classes = json.loads(blend_parts["weights"].read_text())["classes"]

    class Params:
        window_s = 5.0

    blend = Blend.__new__(Blend)
    blend.weights, blend.space = {"cnn": 0.5, "head": 0.5}, "logit"
    blend.cnn = type("CNN", (), {"params": Params(), "classes": classes})()
    rng = np.random.default_rng(0)
    cnn_rows = rng.uniform(0.1, 0.9, (12, len(classes))).astype(np.float32)
    # BirdNET stopped after 7 rows, the CNN read all 12
    prediction = FilePrediction(Path("a.ogg"), list(range(5, 61, 5)), cnn_rows)
    head_rows = rng.uniform(0.1, 0.9, (7, len(classes))).astype(np.float32)
    combined = blend.combine(prediction, head_rows, "decoding stopped at 35 s")
    assert combined.error is None and len(combined.probabilities) == 12
    np.testing.assert_allclose(combined.probabilities[7:], cnn_rows[7:], rtol=1e-5)
    assert "the head member could not read it to its end" in combined.notes[0]
    submission, problems = assemble_submission([combined], classes, SETTINGS, {}, 5.0)
    assert len(submission) == 12
    assert problems["filename"].tolist() == ["a.ogg"]
    assert problems.loc[0, ["predicted_rows", "filled_rows"]].tolist() == [12, 0]
    # the other way round: the CNN stopped, the head's rows carry on
    short = FilePrediction(Path("b.ogg"), [5, 10], cnn_rows[:2], "decoding stopped at 10 s")
    combined = blend.combine(short, head_rows, None)
    assert combined.error is None and len(combined.probabilities) == 7
    assert "the cnn member could not read it" in combined.notes[0]
    # neither could: the error stands, with the rows either had
    combined = blend.combine(short, head_rows[:1], "stopped")
    assert combined.error == "decoding stopped at 10 s" and len(combined.probabilities) == 2


@pytest.mark.training
def test_members_that_do_not_fit_together_are_refused_by_name(tmp_path, tiny_demo, blend_parts):
    parts = blend_parts
    classes = taxonomy_classes(tiny_demo)
    other = make_head(tmp_path / "other.npz", classes[::-1], parts["model"])
    with pytest.raises(HeadError, match=r"heads disagree on classes.*head_0\.npz.*other\.npz"):
        HeadEnsemble.load([parts["heads"][0], other])
    own_windows = make_head(tmp_path / "own_windows.npz", classes, parts["model"], hop_s=None)
    with pytest.raises(HeadError, match=r"heads disagree on window_hop_s.*own_windows\.npz"):
        HeadEnsemble.load([parts["heads"][0], own_windows])
    with pytest.raises(
        PredictionError, match=r"other\.npz.*fold_0\.keras.*same 6 classes in another order"
    ):
        load_blend(parts["cnn"], [other], parts["model"], parts["weights"])
    another_model = tmp_path / "another.tflite"
    build_tflite(another_model, hidden_width=8)
    with pytest.raises(HeadError, match=r"trained on embeddings of tiny_birdnet\.tflite"):
        load_blend(parts["cnn"], parts["heads"], another_model, parts["weights"])
    with pytest.raises(PredictionError, match=r"missing: \['weights'\]"):
        load_blend(parts["cnn"], parts["heads"], parts["model"])
    with pytest.raises(HeadError, match="head file not found"):
        HeadEnsemble.load([tmp_path / "absent.npz"])


def test_config_refuses_a_blend_without_the_cnn_and_windows_past_the_row():
    with pytest.raises(ConfigError, match="lacks cnn"):
        load_config(overrides={"data_dir": "x", "ensemble": {"members": ["head"]}})
    row_offsets = {"row_window_offsets_s": [0, 2.5], "window_hop_s": None}
    with pytest.raises(ConfigError, match="ends past the row"):
        load_config(overrides={"data_dir": "x", "reference": row_offsets})
    # the offsets are not used with a grid
    load_config(overrides={"data_dir": "x", "reference": {"row_window_offsets_s": [0, 2.5]}})
    with pytest.raises(ConfigError, match=r"window_hop_s 2.5: .* unheard"):
        load_config(overrides={"data_dir": "x", "audio": {"window_s": 2.0}})
    with pytest.raises(ConfigError, match="must divide 1"):
        load_config(overrides={"data_dir": "x", "ensemble": {"weight_step": 0.3}})


@pytest.mark.parametrize(
    "offsets, hop_s, n_windows, second_window_s, fifth_window_s",
    [
        # three windows inside each row: the fifth is the second row's, 1 s into it
        ((0.0, 1.0, 2.0), None, 9, 1.0, 6.0),
        # one grid every 2.5 s over the 15 s of rows: the fifth starts at 10 s, in the last row
        ((), 2.5, 6, 2.5, 10.0),
    ],
    ids=["row offsets", "grid"],
)
def test_the_rows_birdnet_hears_are_the_rows_the_cnn_predicts(
    tmp_path, offsets, hop_s, n_windows, second_window_s, fifth_window_s
):
    """Cut whole (a soundscape shard) or streamed row by row (prediction), a recording gives the
    same windows over its consecutive 5-s rows, a last partial row filled with its own audio;
    a grid window past the rows' end is filled from its own audio too."""
    import dataclasses

    from support import write_audio

    from dawnchorus.config import AudioParams, section_defaults
    from dawnchorus.inference.recordings import recording_windows
    from dawnchorus.pretrained.embeddings import (
        SAMPLE_RATE,
        RowWindowCutter,
        RowWindows,
        cut_row_windows,
    )

    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(12 * SAMPLE_RATE)).astype(np.float32)
    path = write_audio(tmp_path / "a.wav", samples, SAMPLE_RATE)
    layout = RowWindows(5.0, offsets, hop_s)
    whole = cut_row_windows(samples, layout, min_last_window_s=1.0)
    assert whole.shape == (n_windows, 3 * SAMPLE_RATE)  # 2 whole rows and the 2-s tail
    assert layout.n_rows(n_windows) == 3
    # the rows: 10 s of audio, then the 2-s tail repeated (10-12 s, 10-12 s, 10-11 s)
    tail = samples[10 * SAMPLE_RATE :]
    rows = np.concatenate([samples[: 10 * SAMPLE_RATE], tail, tail, tail[:SAMPLE_RATE]])
    for index, start_s in ((1, second_window_s), (4, fifth_window_s)):
        start = round(start_s * SAMPLE_RATE)
        np.testing.assert_array_equal(whole[index], rows[start : start + 3 * SAMPLE_RATE])
    params = dataclasses.replace(
        AudioParams.from_config(section_defaults("audio")), sample_rate=SAMPLE_RATE
    )
    cutter = RowWindowCutter(layout)
    streamed = [
        window for row in recording_windows(path, params, 1.0) for window in cutter.add_row(row)
    ]
    streamed = np.stack(streamed + cutter.finish())
    np.testing.assert_allclose(streamed, whole, atol=1e-4)  # the WAV's 16-bit rounding
    # a tail under min_last_window_s is dropped with its row
    assert len(cut_row_windows(samples[: 10 * SAMPLE_RATE + 1000], layout, 1.0)) == len(
        layout.window_starts_s(2)
    )
    # a recording shorter than one BirdNET window is one row, heard whole
    short = cut_row_windows(samples[:SAMPLE_RATE], layout, 1.0)
    assert len(short) == len(layout.window_starts_s(1)) > 0
    np.testing.assert_array_equal(short[0][:SAMPLE_RATE], samples[:SAMPLE_RATE])


def test_a_row_pools_every_window_that_overlaps_it_weighted_by_overlap():
    from dawnchorus.pretrained.embeddings import RowWindows, pool_rows

    embeddings = np.arange(12, dtype=np.float32).reshape(6, 2)  # window k: (2k, 2k + 1)
    grid = RowWindows(5.0, (), 2.5)  # windows at 0, 2.5, ..., 12.5 s over three rows
    pooled = pool_rows(embeddings, grid, 3, "mean_max")
    # row 1 (5-10 s) hears windows 1 (0.5 s of it), 2 (3 s) and 3 (2.5 s)
    mean = (0.5 * embeddings[1] + 3 * embeddings[2] + 2.5 * embeddings[3]) / 6
    np.testing.assert_allclose(pooled[1], np.concatenate([mean, embeddings[3]]), rtol=1e-6)
    # row 0 hears windows 0 (3 s) and 1 (2.5 s), not 2, which starts where the row ends
    mean = (3 * embeddings[0] + 2.5 * embeddings[1]) / 5.5
    np.testing.assert_allclose(pooled[0], np.concatenate([mean, embeddings[1]]), rtol=1e-6)
    # each row's own windows: the plain mean and max of its three
    own = RowWindows(5.0, (2.0, 0.0, 1.0))  # listed in any order, cut in order of start
    embeddings = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    pooled = pool_rows(embeddings, own, 2, "mean_max")
    for row in range(2):
        mine = embeddings[3 * row : 3 * row + 3]
        np.testing.assert_allclose(
            pooled[row], np.concatenate([mine.mean(0), mine.max(0)]), rtol=1e-5, atol=1e-6
        )
    with pytest.raises(ValueError, match="5 window embeddings for 6 windows"):
        pool_rows(embeddings[:5], own, 2, "mean")
    with pytest.raises(ValueError, match="not those of whole rows"):
        grid.n_rows(5)
    assert grid.problem() is None and "every 2.5 s" in grid.describe()
    assert "leaves audio unheard" in RowWindows(5.0, (), 3.5).problem()
    assert "do not fit inside it" in RowWindows(5.0, (0.0, 2.5)).problem()


@pytest.fixture(scope="module")
def exported_blend(tmp_path_factory, tiny_demo, tiny_prepared, tiny_birdnet, blend_parts):
    """The export of a one-fold blend (the CNN fold model, the fold's head), checked on the
    tiny demo's recordings with their real embeddings."""
    from dawnchorus.inference.export import export_stage
    from dawnchorus.pretrained.embeddings import EmbeddingSettings, embedding_stage

    folder = tmp_path_factory.mktemp("exported_blend")
    # an untrained fold model's scores differ between windows by little more than int8's
    # resolution: its AUC check is held to a wide tolerance (test_engines tests the refusal)
    config = load_config(
        overrides={"data_dir": str(tiny_demo), "predict": {"quantized_auc_tolerance": 0.3}}
    )
    settings = EmbeddingSettings.from_config(config)
    shards = []
    for shard in range(len(tiny_prepared.shards)):
        shards.append(folder / f"embeddings_{shard}.h5")
        embedding_stage(
            tiny_prepared.manifest, tiny_demo, shard, tiny_birdnet, settings, shards[-1]
        )
    out = folder / "export" / "model.tflite"
    card = export_stage(
        blend_parts["cnn"][:1],
        tiny_prepared.manifest,
        tiny_prepared.shards,
        config,
        out,
        heads=blend_parts["heads"][:1],
        weights_json=blend_parts["weights"],
        embedding_shards=shards,
    )
    return out, card


@pytest.mark.training
def test_the_export_carries_the_blend_and_checks_it(tiny_demo, tiny_birdnet, exported_blend):
    from dawnchorus.inference.members import BLEND_BUNDLE, load_exported_blend
    from dawnchorus.pretrained.head import load_head_bundle

    out, card = exported_blend
    assert 0 <= card["parity"]["blend_max_abs_difference"] <= 1e-3
    heads, metadata = load_head_bundle(out.with_name(BLEND_BUNDLE))
    assert len(heads.heads) == 1 and heads.metadata["fold"] == 0
    assert metadata["weights"] == {"cnn": 0.6, "head": 0.4}
    assert metadata["embedding_file"] == "tiny_birdnet.tflite"
    assert metadata["embedding_sha256"] == EmbeddingModel(tiny_birdnet).sha256
    blend = load_exported_blend(out, tiny_birdnet)
    assert blend.cnn.engine == "tflite-fp32" and len(blend.head.heads.heads) == 1
    # the export folder runs the engine the export was made for (the default), with the blend
    assert load_exported_blend(out.parent, tiny_birdnet).cnn.engine == "tflite-int8"
    assert (
        card["engine"]["file"] == "model.int8.tflite"
        and out.with_name(card["engine"]["file"]).is_file()
    )
    soundscapes = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))[:1]
    classes = taxonomy_classes(tiny_demo)
    exported, _ = soundscape_submission(soundscapes, blend, classes, SETTINGS)
    assert len(exported) == 12


@pytest.mark.training
def test_predict_command_blends_with_the_export_unless_told_not_to(
    tmp_path, tiny_demo, tiny_birdnet, exported_blend, capsys
):
    from dawnchorus.cli import main

    out, _ = exported_blend
    soundscape = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))[0]
    common = [str(soundscape), "--models", str(out), "--smoothing-kernel", "1"]
    birdnet = ["--birdnet-model", str(tiny_birdnet)]
    assert main(["predict", *common, *birdnet, "--out", str(tmp_path / "b")]) == 0
    assert "predicting with a blend (logits, weights cnn 0.6, head 0.4)" in capsys.readouterr().err
    assert main(["predict", *common, "--cnn-only", "--out", str(tmp_path / "c")]) == 0
    table = f"{soundscape.name}.csv"
    blended, alone = pd.read_csv(tmp_path / "b" / table), pd.read_csv(tmp_path / "c" / table)
    classes = taxonomy_classes(tiny_demo)
    assert len(blended) == len(alone) == 12
    assert not np.allclose(blended[classes], alone[classes], atol=1e-3)
    # the export's folder blends as its engine's file does
    int8 = out.with_name("model.int8.tflite")
    for models, name in ((out.parent, "folder"), (int8, "file")):
        argv = ["predict", *common[:2], str(models), *common[3:], *birdnet]
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
    folder, file = (pd.read_csv(tmp_path / name / table)[classes] for name in ("folder", "file"))
    np.testing.assert_allclose(folder, file)
    assert np.abs(folder.to_numpy() - blended[classes].to_numpy()).max() < 0.2, "int8 ~ fp32"
    # another BirdNET model than the heads': refused by name, nothing written
    other = tmp_path / "other.tflite"
    build_tflite(other, hidden_width=8)
    code = main(["predict", *common, "--birdnet-model", str(other), "--out", str(tmp_path / "d")])
    assert code == 2 and "trained on embeddings of tiny_birdnet.tflite" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    code = main(["predict", *common, "--birdnet-model", "absent.tflite", "--out", "e"])
    assert code == 2 and "absent.tflite: model file not found" in capsys.readouterr().err


@pytest.mark.training
def test_the_ablation_scores_the_head_and_the_blend_as_the_submission_would(tiny_demo, blend_parts):
    from dawnchorus.inference.soundscape_ablation import AblationGrid, soundscape_ablation
    from dawnchorus.inference.submission import score_soundscapes

    soundscapes = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    truth = pd.read_csv(tiny_demo / "test_soundscapes_ground_truth.csv")
    classes = taxonomy_classes(tiny_demo)
    grid = AblationGrid.from_config(
        {"hops_per_window": [1], "smoothing_kernels": [[1]], "scale_by_top_windows": [0]}
    )
    parts = blend_parts
    blend_parts_ = {
        "heads": parts["heads"],
        "embedding_model": parts["model"],
        "weights_json": parts["weights"],
    }
    ablation = soundscape_ablation(
        {0: parts["cnn"]}, soundscapes, truth, classes, SETTINGS, grid, blend_parts=blend_parts_
    )
    scores = {entry["member"]: entry["macro_auc"] for entry in ablation["results"]}
    assert sorted(scores) == ["blend", "cnn", "head"]
    assert ablation["configured"]["member"] == "blend"
    blend = load_blend(parts["cnn"], parts["heads"], parts["model"], parts["weights"])
    submission, _ = soundscape_submission(soundscapes, blend, classes, SETTINGS)
    assert scores["blend"] == pytest.approx(score_soundscapes(submission, truth)["macro_auc"])
    assert len(set(scores.values())) == 3
