"""Inference: windows, features, the ensemble engines, the submission, the predict command."""

from __future__ import annotations

import json
import shutil
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from support import save_fold_model, taxonomy_classes, tone, truncated_ogg, write_audio

from dawnchorus.cli import main
from dawnchorus.config import AudioParams, ConfigError, load_config, section_defaults
from dawnchorus.inference.engines import PredictionError, load_ensemble
from dawnchorus.inference.export import ExportError, export_tflite
from dawnchorus.inference.members import Blend
from dawnchorus.inference.postprocess import (
    merge_overlapping_windows,
    scale_by_top_windows,
    smooth_over_windows,
)
from dawnchorus.inference.recordings import (
    predict_recordings,
    recording_windows,
    window_features,
)
from dawnchorus.inference.soundscape_ablation import AblationGrid, soundscape_ablation
from dawnchorus.inference.submission import score_soundscapes, soundscape_submission
from dawnchorus.learning.modelcard import ModelFileError, read_metadata
from dawnchorus.signal.features import log_mel

pytestmark = pytest.mark.training
PARAMS = AudioParams.from_config(section_defaults("audio"))
SETTINGS = {**section_defaults("predict"), "batch_size": 16}


@pytest.fixture(scope="module")
def soundscape_windows(tiny_demo):
    path = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))[0]
    return np.stack([window_features(w, PARAMS) for w in recording_windows(path, PARAMS, 1.0)])


@pytest.fixture(scope="module")
def sed_folds(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("sed_folds")
    classes = taxonomy_classes(tiny_demo)
    return [
        # denoised: the export must also run its per-band background (top_k) in TFLite
        save_fold_model(root / f"fold_{k}.keras", classes, k, "denoised", head="sed")
        for k in range(2)
    ]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, folds, soundscape_windows):
    out = tmp_path_factory.mktemp("export") / "model.tflite"
    card = export_tflite(folds, out, soundscape_windows, tolerance=1e-3, threads=2)
    return out, card


# --------------------------------------------------------------------------------------------
# windows and features


@pytest.mark.parametrize(
    ("seconds", "expected_windows"),
    [(60.0, 12), (62.5, 13), (60.4, 12), (3.0, 1), (10.0, 2)],
)
def test_consecutive_windows_and_the_last_partial_one(tmp_path, seconds, expected_windows):
    path = write_audio(tmp_path / "a.ogg", tone(seconds, 32000), 32000)
    windows = list(recording_windows(path, PARAMS, min_last_window_s=1.0))
    assert len(windows) == expected_windows
    assert all(w.shape == (PARAMS.window_samples,) for w in windows)


def test_a_partial_window_repeats_its_own_audio_instead_of_silence(tmp_path):
    audio = tone(7.0, 32000)[:, 0]
    path = write_audio(tmp_path / "a.wav", audio, 32000)
    last = list(recording_windows(path, PARAMS, min_last_window_s=1.0))[-1]
    tail = audio[5 * 32000 :]
    np.testing.assert_allclose(last[: len(tail)], tail, atol=1e-6)
    np.testing.assert_allclose(last[len(tail) : 2 * len(tail)], tail, atol=1e-6)


def test_features_are_the_training_features_of_the_window(tmp_path):
    audio = tone(5.0, 32000, freq=2000)[:, 0]
    path = write_audio(tmp_path / "a.wav", audio, 32000)
    (window,) = recording_windows(path, PARAMS, 1.0)
    features = window_features(window, PARAMS)
    assert features.shape == (PARAMS.window_frames, PARAMS.n_mels)
    assert features.dtype == np.float16  # what the shards store, so what training saw
    np.testing.assert_array_equal(features, log_mel(audio, PARAMS).astype(np.float16))


def test_8_khz_stereo_is_downmixed_and_resampled(tmp_path):
    stereo = np.concatenate([tone(12.0, 8000, freq=1500), tone(12.0, 8000, freq=1500)], axis=1)
    path = write_audio(tmp_path / "field.flac", stereo, 8000)
    windows = list(recording_windows(path, PARAMS, 1.0))
    assert len(windows) == 3  # 5 + 5 + 2 s
    features = window_features(windows[0], PARAMS)
    assert np.isfinite(features.astype(np.float32)).all()
    peak_band = int(np.argmax(features.astype(np.float32).mean(axis=0)))
    # 1.5 kHz lands in the same mel band as it would from a 32 kHz recording
    reference = window_features(tone(5.0, 32000, freq=1500)[:, 0], PARAMS)
    assert abs(peak_band - int(np.argmax(reference.astype(np.float32).mean(axis=0)))) <= 1


def test_a_two_hour_recording_is_streamed_in_bounded_memory(tmp_path, exported):
    path = tmp_path / "two_hours.wav"
    rate, seconds = 8000, 2 * 3600
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as handle:
        block = tone(60.0, rate)
        for _ in range(seconds // 60):
            handle.write(block)
    ensemble = load_ensemble([exported[0]], threads=2)
    tracemalloc.start()
    try:
        (prediction,) = predict_recordings([path], ensemble, batch_size=64, min_last_window_s=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert prediction.error is None
    assert len(prediction.end_s) == seconds // 5 and prediction.end_s[-1] == seconds
    whole_file = seconds * PARAMS.sample_rate * 4  # float32 at the model's rate: 922 MB
    assert peak < whole_file / 10, f"peak {peak / 2**20:.0f} MB"


# --------------------------------------------------------------------------------------------
# models and the export


def test_export_reproduces_the_keras_ensemble_on_real_windows(folds, exported, soundscape_windows):
    out, card = exported
    assert card["parity"]["max_abs_difference"] <= 1e-3
    assert card["folds"] == [str(path) for path in folds]
    keras_probabilities = load_ensemble(folds, threads=2).predict(soundscape_windows)
    tflite_probabilities = load_ensemble([out], threads=2).predict(soundscape_windows)
    assert np.abs(tflite_probabilities - keras_probabilities).max() <= 1e-3
    # the ensemble is the mean of the folds, and the folds really differ
    single = [load_ensemble([path]).predict(soundscape_windows) for path in folds]
    assert np.abs(single[0] - single[1]).max() > 0.05
    np.testing.assert_allclose(keras_probabilities, np.mean(single, axis=0), atol=1e-6)
    assert keras_probabilities.std(axis=0).max() > 1e-3, "windows get different predictions"


def test_sed_models_give_one_row_per_window_from_chunks_of_two(sed_folds, soundscape_windows):
    from dawnchorus.inference.engines import join_windows

    keras_ensemble = load_ensemble(sed_folds, threads=2)
    assert keras_ensemble.segments == 2
    rows = keras_ensemble.predict(soundscape_windows)
    assert rows.shape == (len(soundscape_windows), len(keras_ensemble.classes))
    assert ((rows > 0) & (rows < 1)).all() and rows.std(axis=0).max() > 1e-3
    # the rows of a chunk are its two segments, in order
    chunks = join_windows(soundscape_windows[:4].astype(np.float32), 2)
    assert chunks.shape == (2, 2 * PARAMS.window_frames, PARAMS.n_mels)
    by_chunk = keras_ensemble.run_batch(chunks)
    np.testing.assert_allclose(by_chunk.reshape(4, -1), rows[:4], atol=1e-6)
    # an odd window count: the last chunk repeats its one window, and only its row is kept
    three = keras_ensemble.predict(soundscape_windows[:3])
    padded = keras_ensemble.run_batch(join_windows(soundscape_windows[2:3].astype(np.float32), 2))
    np.testing.assert_allclose(three[:2], rows[:2], atol=1e-6)
    np.testing.assert_allclose(three[2], padded[0, 0], atol=1e-6)


def test_sed_export_reproduces_the_keras_rows(tmp_path, sed_folds, soundscape_windows):
    from dawnchorus.inference.engines import join_windows

    out = tmp_path / "sed.tflite"
    chunks = join_windows(soundscape_windows.astype(np.float32), 2)
    card = export_tflite(sed_folds, out, chunks, tolerance=1e-3, threads=2)
    assert card["head"] == "sed" and card["input_s"] == 2 * PARAMS.window_s
    tflite = load_ensemble([out], threads=2)
    keras_rows = load_ensemble(sed_folds, threads=2).predict(soundscape_windows)
    assert np.abs(tflite.predict(soundscape_windows) - keras_rows).max() <= 1e-3


def test_an_export_outside_the_tolerance_is_not_written(tmp_path, folds, soundscape_windows):
    out = tmp_path / "model.tflite"
    with pytest.raises(ExportError, match="differs from the Keras ensemble"):
        export_tflite(folds, out, soundscape_windows, tolerance=1e-12)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_models_carry_their_classes_and_features(folds, tiny_demo):
    metadata = read_metadata(folds[0])
    assert metadata["classes"] == taxonomy_classes(tiny_demo)
    assert metadata["audio"]["n_mels"] == PARAMS.n_mels and metadata["normalization"] == "minmax"


def test_model_file_problems_are_named(tmp_path, folds, tiny_demo):
    with pytest.raises(PredictionError, match=r"not found: .*fold_9\.keras"):
        load_ensemble([folds[0], tmp_path / "fold_9.keras"])
    plain = tmp_path / "plain.keras"
    shutil.copy(folds[0], plain)
    import zipfile

    with zipfile.ZipFile(folds[0]) as source, zipfile.ZipFile(plain, "w") as target:
        for item in source.namelist():
            if item != "dawnchorus.json":
                target.writestr(item, source.read(item))
    with pytest.raises(ModelFileError, match=r"no dawnchorus\.json inside"):
        load_ensemble([plain])
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match=r"not a readable \.keras model"):
        load_ensemble([garbage])
    other = save_fold_model(tmp_path / "other.keras", taxonomy_classes(tiny_demo), 3, "fixed")
    with pytest.raises(PredictionError, match="differ in normalization"):
        load_ensemble([folds[0], other])
    longer = save_fold_model(tmp_path / "sed.keras", taxonomy_classes(tiny_demo), 3, head="sed")
    with pytest.raises(PredictionError, match="differ in input_s"):
        load_ensemble([folds[0], longer])
    older = tmp_path / "older.keras"
    with zipfile.ZipFile(folds[0]) as source, zipfile.ZipFile(older, "w") as target:
        for item in source.namelist():
            content = source.read(item)
            if item == "dawnchorus.json":
                content = json.dumps({**json.loads(content), "format": 1}).encode()
            target.writestr(item, content)
    with pytest.raises(ModelFileError, match=r"format 1 .*retrain"):
        load_ensemble([older])
    tflite_without_card = tmp_path / "model.tflite"
    tflite_without_card.write_bytes(b"\0" * 16)
    with pytest.raises(ModelFileError, match=r"model\.json is missing"):
        load_ensemble([tflite_without_card])


# --------------------------------------------------------------------------------------------
# the submission


def test_submission_keeps_every_row_of_bad_soundscapes(tmp_path, tiny_demo, exported):
    soundscapes = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    folder = tmp_path / "test_soundscapes"
    folder.mkdir()
    good = shutil.copy(soundscapes[0], folder)
    cut = folder / soundscapes[1].name  # listed in the sample submission, cut after ~24 s
    cut.write_bytes(soundscapes[1].read_bytes()[: int(soundscapes[1].stat().st_size * 0.4)])
    empty = folder / "ZZ_empty.ogg"  # not listed: 60 s of fallback rows
    empty.write_bytes(b"")
    short = folder / "ZZ_short.ogg"  # not listed, cut after 1.8 s: one window, the rest filled
    short.write_bytes(truncated_ogg(60.0, 0.03))
    blend = Blend(load_ensemble([exported[0]]))
    classes = taxonomy_classes(tiny_demo)
    submission, problems = soundscape_submission(
        [good, cut, empty, short], blend, classes, SETTINGS, tiny_demo / "sample_submission.csv"
    )
    sample = pd.read_csv(tiny_demo / "sample_submission.csv")
    assert submission.columns.tolist() == sample.columns.tolist()
    unlisted = submission["row_id"].str.startswith("ZZ_")
    assert submission["row_id"][~unlisted].tolist() == sample["row_id"].tolist()
    assert submission["row_id"][unlisted].tolist() == [
        *(f"ZZ_empty_{end}" for end in range(5, 61, 5)),
        *(f"ZZ_short_{end}" for end in range(5, 61, 5)),
    ]
    problems = problems.set_index("filename")
    assert problems.index.tolist() == [cut.name, empty.name, short.name]
    assert problems.loc[empty.name, "filled_rows"] == 12
    assert problems.loc[short.name, ["predicted_rows", "filled_rows"]].tolist() == [1, 11]
    assert problems.loc[short.name, "reason"].startswith("truncated: the Ogg stream stops")
    assert problems.loc[cut.name, "reason"].startswith("truncated: the Ogg stream stops")
    assert 3 <= problems.loc[cut.name, "predicted_rows"] <= 6
    assert problems.loc[cut.name, ["predicted_rows", "filled_rows"]].sum() == 12
    filled = submission.set_index("row_id").loc[f"{cut.stem}_60"]
    assert (filled == SETTINGS["fallback_probability"]).all()


def test_a_listed_soundscape_without_audio_keeps_its_rows_and_is_a_problem(
    tmp_path, tiny_demo, exported
):
    soundscapes = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    sample = pd.read_csv(tiny_demo / "sample_submission.csv")
    missing = soundscapes[0].stem
    assert sample["row_id"].str.startswith(missing + "_").sum() == 12
    submission, problems = soundscape_submission(
        soundscapes[1:],
        Blend(load_ensemble([exported[0]])),
        taxonomy_classes(tiny_demo),
        SETTINGS,
        tiny_demo / "sample_submission.csv",
    )
    assert sorted(submission["row_id"]) == sorted(sample["row_id"])
    rows = submission.set_index("row_id").loc[
        sample["row_id"][sample["row_id"].str.startswith(missing + "_")]
    ]
    assert (rows == SETTINGS["fallback_probability"]).all().all()
    assert problems["filename"].tolist() == [missing]
    assert problems.loc[0, ["predicted_rows", "filled_rows"]].tolist() == [0, 12]
    assert "no audio file" in problems.loc[0, "reason"]


def test_empty_soundscape_folder_gives_a_header_only_submission(tiny_demo, exported):
    submission, problems = soundscape_submission(
        [], Blend(load_ensemble([exported[0]])), taxonomy_classes(tiny_demo), SETTINGS
    )
    assert submission.empty and submission.columns.tolist() == [
        "row_id",
        *taxonomy_classes(tiny_demo),
    ]
    assert problems.empty


def test_a_model_of_another_taxonomy_is_refused(tiny_demo, exported):
    classes = taxonomy_classes(tiny_demo)
    blend = Blend(load_ensemble([exported[0]]))
    with pytest.raises(PredictionError, match=r"missing \['newbird'\]"):
        soundscape_submission([], blend, [*classes, "newbird"], SETTINGS)
    with pytest.raises(PredictionError, match="same classes in another order"):
        soundscape_submission([], blend, classes[::-1], SETTINGS)


def test_soundscape_score_is_the_competition_metric(tiny_demo):
    truth = pd.read_csv(tiny_demo / "test_soundscapes_ground_truth.csv")
    perfect = truth.copy()
    scores = score_soundscapes(perfect, truth)
    assert scores["macro_auc"] == 1.0 and scores["windows"] == len(truth)
    with pytest.raises(PredictionError, match="have no prediction"):
        score_soundscapes(perfect.iloc[1:], truth)


def test_predict_folds_must_be_trained_folds():
    with pytest.raises(ConfigError, match=r"predict.folds names untrained folds \[3\]"):
        load_config(
            None, {"data_dir": ".", "folds": {"train": [0, 1]}, "predict": {"folds": [1, 3]}}
        )


# --------------------------------------------------------------------------------------------
# the predict command


def test_predict_command_on_a_folder_with_a_bad_file(tmp_path, folds, capsys):
    recordings = tmp_path / "recorder"
    write_audio(recordings / "site_a" / "dawn.wav", tone(12.0, 48000, channels=2), 48000)
    write_audio(recordings / "dusk.flac", tone(4.0, 22050), 22050)
    (recordings / "broken.ogg").write_bytes(b"OggS not really")
    (recordings / "notes.txt").write_text("not audio")
    out = tmp_path / "detections"
    argv = ["predict", "--models", ",".join(map(str, folds)), "--out", str(out), "--combine"]
    code = main([*argv, str(recordings)])
    assert code == 1, "a recording could not be decoded"
    assert "broken.ogg" in capsys.readouterr().err
    problems = pd.read_csv(out / "problems.csv")
    assert problems["path"].tolist() == [str(recordings / "broken.ogg")]
    table = pd.read_csv(out / "combined.csv")
    assert table.groupby("filename").size().to_dict() == {
        str(recordings / "dusk.flac"): 1,
        str(recordings / "site_a" / "dawn.wav"): 3,
    }
    assert table["end_s"].tolist() == [4, 5, 10, 12], "each recording's last window ends with it"
    assert len(table.columns) == 3 + len(read_metadata(folds[0])["classes"])

    # started again: nothing to predict, the problem still reported
    assert main([*argv, str(recordings)]) == 1
    assert "3 recording(s) skipped" in capsys.readouterr().err
    assert pd.read_csv(out / "problems.csv")["path"].tolist() == problems["path"].tolist()

    top = tmp_path / "top"
    code = main(
        ["predict", "--models", str(folds[0]), "--out", str(top), "--top-k", "2",
         str(recordings / "dusk.flac")]
    )  # fmt: skip
    assert code == 0
    assert pd.read_csv(top / "dusk.flac.csv")["rank"].tolist() == [1, 2]


def test_predict_command_smooths_unless_told_not_to(tmp_path, folds, capsys):
    recording = write_audio(tmp_path / "dawn.wav", tone(30.0, 32000), 32000)
    tables = {}
    for name, options in {
        "raw": ["--smoothing-kernel", "1"],
        "spelt_out": ["--smoothing-kernel", "0.25,0.5,0.25"],
        "default": [],
        "scaled": ["--smoothing-kernel", "1", "--scale-by-top-windows", "2"],
    }.items():
        out = tmp_path / name
        argv = ["predict", "--models", ",".join(map(str, folds)), "--out", str(out), *options]
        assert main([*argv, str(recording)]) == 0
        tables[name] = pd.read_csv(out / "dawn.wav.csv").iloc[:, 3:].to_numpy()
    raw = tables["raw"]
    assert raw.shape[0] == 6
    np.testing.assert_allclose(
        tables["default"], smooth_over_windows(raw, [0.25, 0.5, 0.25]), atol=2e-6
    )
    np.testing.assert_array_equal(tables["spelt_out"], tables["default"])
    np.testing.assert_allclose(tables["scaled"], scale_by_top_windows(raw, 2), atol=2e-6)
    argv = ["predict", "--models", str(folds[0]), "--out", str(tmp_path / "x")]
    assert main([*argv, "--smoothing-kernel", "1,1", str(recording)]) == 2
    assert "odd number of weights" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error
        main([*argv, "--smoothing-kernel", "0.25,x,0.25", str(recording)])
    assert "not a comma-separated list" in capsys.readouterr().err


def test_predict_command_refuses_what_it_cannot_use(tmp_path, folds, capsys):
    out = str(tmp_path / "out")
    assert main(["predict", "--models", str(folds[0]), "--out", out, str(tmp_path)]) == 2
    assert "no audio files" in capsys.readouterr().err
    missing = str(tmp_path / "fold_4" / "model.keras")
    audio = write_audio(tmp_path / "a.wav", tone(5.0, 32000), 32000)
    assert main(["predict", "--models", missing, "--out", out, str(audio)]) == 2
    assert "fold_4/model.keras" in capsys.readouterr().err
    assert main(["predict", "--models", str(folds[0]), "--out", "x.csv", str(audio)]) == 2
    assert "--out is a folder" in capsys.readouterr().err
    argv = ["predict", "--models", str(folds[0]), "--out", out, "--species"]
    (tmp_path / "species.txt").write_text("nosuchbird\n")
    assert main([*argv, str(tmp_path / "species.txt"), str(audio)]) == 2
    assert "nosuchbird" in capsys.readouterr().err


def test_export_card_is_json_beside_the_model(exported):
    out, card = exported
    assert json.loads(out.with_name("model.json").read_text()) == card


def test_overlapping_windows_are_predicted_and_merged_into_the_rows(tmp_path, folds, sed_folds):
    """hops_per_window 2: the windows halfway between whole rows are cut from the audio,
    predicted like the rows' own and averaged into both rows they overlap."""
    samples = tone(17.0, 32000)[:, 0]  # three whole rows and a filled 2-s last one
    recording = write_audio(tmp_path / "dusk.wav", samples, 32000)
    ensemble = load_ensemble(folds)

    def rows(hops):
        (prediction,) = predict_recordings([recording], ensemble, 4, 1.0, [1.0], 0, hops)
        return prediction

    plain, overlapped = rows(1), rows(2)
    assert overlapped.end_s == plain.end_s == [5, 10, 15, 20]
    size = PARAMS.window_samples
    halfway = np.stack(
        [
            window_features(samples[start : start + size], PARAMS)
            for start in (size // 2, 3 * size // 2)
        ]
    )
    between = ensemble.predict(halfway)[:, None, :]
    np.testing.assert_allclose(
        overlapped.probabilities,
        merge_overlapping_windows(plain.probabilities, between, 2),
        atol=2e-6,
    )
    assert not np.allclose(overlapped.probabilities[:3], plain.probabilities[:3])
    np.testing.assert_allclose(overlapped.probabilities[3], plain.probabilities[3], atol=1e-7)
    with pytest.raises(PredictionError, match="one window per input"):
        next(predict_recordings([recording], load_ensemble(sed_folds), 4, 1.0, [1.0], 0, 2))


# --------------------------------------------------------------------------------------------
# the soundscape ablation


def test_ablation_scores_every_round_and_setting_as_the_submission_would(tiny_demo, folds):
    """Each cell is the score of the submission made with that round's models and settings,
    though each (round, hops) is predicted once."""
    soundscapes = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    truth = pd.read_csv(tiny_demo / "test_soundscapes_ground_truth.csv")
    classes = taxonomy_classes(tiny_demo)
    grid = AblationGrid.from_config(
        {
            "hops_per_window": [2, 1],
            "smoothing_kernels": [[1], [0.25, 0.5, 0.25]],
            "scale_by_top_windows": [0, 3],
        }
    )
    settings = {**SETTINGS, "smoothing_kernel": [0.25, 0.5, 0.25], "hops_per_window": 1}
    rounds = {0: folds[:1], 1: folds}
    sample = tiny_demo / "sample_submission.csv"
    ablation = soundscape_ablation(rounds, soundscapes, truth, classes, settings, grid, sample)
    results = ablation["results"]
    assert len(results) == 2 * 2 * 2 * 2
    assert [(entry["round"], entry["hops_per_window"]) for entry in results[::4]] == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    assert {entry["post_processing"] for entry in results} == {
        "none",
        "top-3 scaling",
        "smoothing [0.25, 0.5, 0.25]",
        "smoothing [0.25, 0.5, 0.25] + top-3 scaling",
    }
    assert all(entry["rows"] == 12 * len(soundscapes) for entry in results)
    assert all(entry["audio_s_per_s"] > 0 for entry in results)
    assert ablation["configured"] == {
        "member": "cnn",
        "round": 1,
        "hops_per_window": 1,
        "smoothing_kernel": [0.25, 0.5, 0.25],
        "scale_by_top_windows": 0,
    }
    for entry in (results[0], results[-1]):  # round 0 plain, round 1 overlapped + both steps
        variant = {
            **settings,
            "hops_per_window": entry["hops_per_window"],
            "smoothing_kernel": entry["smoothing_kernel"],
            "scale_by_top_windows": entry["scale_by_top_windows"],
        }
        submission, _ = soundscape_submission(
            soundscapes, Blend(load_ensemble(rounds[entry["round"]])), classes, variant, sample
        )
        assert entry["macro_auc"] == pytest.approx(
            score_soundscapes(submission, truth)["macro_auc"], abs=1e-9
        )
    # the settings are not all the same score: the table measures something
    assert len({round(entry["macro_auc"], 9) for entry in results}) > 4


def test_ablation_skips_overlap_for_models_of_several_windows(tiny_demo, sed_folds):
    soundscapes = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))[:1]
    truth = pd.read_csv(tiny_demo / "test_soundscapes_ground_truth.csv")
    truth = truth[truth["row_id"].str.startswith(soundscapes[0].stem + "_")]
    grid = AblationGrid.from_config(
        {"hops_per_window": [1, 2], "smoothing_kernels": [[1]], "scale_by_top_windows": [0]}
    )
    ablation = soundscape_ablation(
        {0: sed_folds}, soundscapes, truth, taxonomy_classes(tiny_demo), SETTINGS, grid
    )
    assert [entry["hops_per_window"] for entry in ablation["results"]] == [1]
    assert ablation["skipped"] == ["hops_per_window 2: the models take 2 windows per input"]


def test_ablation_kernels_are_checked_with_the_config():
    with pytest.raises(ConfigError, match=r"predict.ablation.smoothing_kernels: \[0.5, 0.5\]"):
        load_config(
            None, {"data_dir": ".", "predict": {"ablation": {"smoothing_kernels": [[0.5, 0.5]]}}}
        )
