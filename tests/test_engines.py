"""The export's engines and precisions: each runs the same ensemble, reduced precisions are held
to the AUC they keep, and an engine that cannot run says so and names the fallback."""

from __future__ import annotations

import json
import re
import shutil
import sys

import numpy as np
import pytest

from dawnchorus.cli import main
from dawnchorus.config import AudioParams, ConfigError, load_config, section_defaults
from dawnchorus.inference.engines import load_ensemble
from dawnchorus.inference.export import EngineChoice, export_tflite
from dawnchorus.inference.recordings import recording_windows, window_features
from dawnchorus.inference.runtimes import ENGINE_FILES, EngineError, engine_file
from dawnchorus.learning.metrics import birdclef_auc

pytestmark = pytest.mark.training
PARAMS = AudioParams.from_config(section_defaults("audio"))


@pytest.fixture(scope="module")
def windows(tiny_demo):
    """Every window of the test soundscapes: real audio, different predictions."""
    paths = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    return np.stack(
        [window_features(w, PARAMS) for path in paths for w in recording_windows(path, PARAMS, 1)]
    ).astype(np.float32)


@pytest.fixture(scope="module")
def keras_rows(windows, folds):
    """The Keras ensemble's scores of every window: what each engine is compared with."""
    return load_ensemble(folds, threads=2).predict(windows)


@pytest.fixture(scope="module")
def labels(keras_rows):
    """Labels that follow the Keras ensemble's own scores, so both precisions have an AUC well
    above chance and a broken quantisation would show."""
    return (keras_rows >= np.quantile(keras_rows, 0.7, axis=0)).astype(np.uint8)


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory, folds, windows):
    """One ONNX Runtime fp32 export of both folds: its folder (copy it to change it)."""
    out = tmp_path_factory.mktemp("onnx_export") / "model.tflite"
    export_tflite(
        folds, out, windows[:8], 1e-3, threads=2, choice=EngineChoice("onnxruntime", "fp32")
    )
    return out.parent


def reduced(engine, precision, windows, labels, tolerance=0.3):
    """Calibrated on half the windows, checked on the other half. The tiny untrained models'
    scores differ between windows by little more than int8's resolution, so the tolerance is
    wide here; trained models lose far less (docs/results.md)."""
    half = len(windows) // 2
    return EngineChoice(
        engine,
        precision,
        calibration=windows[:half],
        quality_windows=windows[half:],
        quality_labels=labels[half:],
        auc_tolerance=tolerance,
    )


@pytest.mark.parametrize(
    ("engine", "precision"),
    [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("tflite", "int8"), ("tflite", "fp16")],
)
def test_each_engine_runs_the_keras_ensemble(
    tmp_path, folds, windows, labels, keras_rows, onnx_export, engine, precision
):
    out = tmp_path / "model.tflite"
    if (engine, precision) == ("onnxruntime", "fp32"):
        shutil.copytree(onnx_export, tmp_path, dirs_exist_ok=True)
        card = json.loads((tmp_path / "model.json").read_text())
    else:
        choice = reduced(engine, precision, windows, labels)
        card = export_tflite(folds, out, windows[:8], 1e-3, threads=2, choice=choice)
    assert card["engine"] == {
        "engine": engine,
        "precision": precision,
        "file": engine_file(engine, precision),
    }
    assert (tmp_path / engine_file(engine, precision)).is_file() and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"model.json", "model.tflite", engine_file(engine, precision)}
    ), "only the TFLite export, the engine's file and the card are left"
    # the export folder runs the engine it was made for
    ensemble = load_ensemble([tmp_path], threads=2)
    assert ensemble.engine == f"{engine}-{precision}"
    rows = ensemble.predict(windows)
    checks = card["checks"][f"{engine}-{precision}"]
    if precision == "fp32":
        assert np.abs(rows - keras_rows).max() <= 1e-3
        assert checks["max_abs_difference"] <= 1e-3
    else:
        assert np.abs(rows - keras_rows).max() > 0, "reduced"
        # float16 rounds the weights only, int8 the activations too (2e-4 and 0.04-0.14 seen)
        assert np.abs(rows - keras_rows).max() <= {"fp16": 0.01, "int8": 0.2}[precision]
        correlation = np.corrcoef(rows.ravel(), keras_rows.ravel())[0, 1]
        # noise would correlate ~0; on these folds TFLite int8 0.999, ONNX Runtime 1.32's int8
        # 0.94 (max difference 0.14), fp16 1.000
        assert correlation > 0.9, f"the ensemble's scores, not noise ({correlation:.3f})"
        # the figures in the card are those of the windows held out from calibration
        half = len(windows) // 2
        fp32_rows = load_ensemble([out], threads=2).predict(windows[half:])
        assert checks["fp32_macro_auc"] == pytest.approx(
            birdclef_auc(labels[half:], fp32_rows).macro, abs=1e-9
        )
        assert checks["macro_auc_change"] == pytest.approx(
            checks["macro_auc"] - checks["fp32_macro_auc"]
        )
        assert checks["macro_auc"] > 0.7 and abs(checks["macro_auc_change"]) <= 0.3
        assert checks["quality_windows"] == len(windows) - half


def test_a_reduced_precision_losing_too_much_auc_leaves_the_fp32_export_in_use(
    tmp_path, folds, windows, labels, onnx_export
):
    """The run goes on with the checked fp32 export (a day of training does not end with no
    model); model.json says what was wanted, why it is not used, and keeps its figures."""
    out = tmp_path / "model.tflite"
    shutil.copytree(onnx_export, tmp_path, dirs_exist_ok=True)  # an earlier export's files
    # a tolerance below any possible change
    choice = reduced("onnxruntime", "int8", windows, labels, tolerance=-1.0)
    card = export_tflite(folds[:1], out, windows[:8], 1e-3, threads=2, choice=choice)
    assert card["engine"]["engine"] == "tflite" and card["engine"]["precision"] == "fp32"
    assert card["engine"]["file"] == "model.tflite"
    assert card["engine"]["wanted"] == "onnxruntime-int8"
    assert re.match(
        r"onnxruntime-int8 lost .* macro AUC against the fp32 export \(0\.\d+ against 0\.\d+ "
        r"on \d+ labelled windows; tolerance -1\.0\): the export runs tflite-fp32",
        card["engine"]["fallback"],
    )
    assert "macro_auc_change" in card["checks"]["onnxruntime-int8"]
    # the refused file stays (the workflow declared it; the card says why it does not run)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "model.int8.onnx",
        "model.json",
        "model.tflite",
    ]
    assert load_ensemble([tmp_path]).engine == "tflite-fp32"
    assert load_ensemble([tmp_path / "model.json"]).engine == "tflite-fp32"


def test_a_new_export_removes_the_engine_files_of_an_earlier_one(
    tmp_path, folds, windows, onnx_export
):
    out = tmp_path / "model.tflite"
    shutil.copytree(onnx_export, tmp_path, dirs_exist_ok=True)
    assert (tmp_path / "model.onnx").is_file()
    card = export_tflite(folds[:1], out, windows[:8], 1e-3)
    assert card["engine"]["file"] == "model.tflite"
    assert not (tmp_path / "model.onnx").exists(), "it would run the earlier folds"
    assert set(ENGINE_FILES) & {p.name for p in tmp_path.iterdir()} == {"model.tflite"}


def test_an_engine_that_cannot_run_names_itself_and_the_fallback(
    tmp_path, onnx_export, monkeypatch, capsys
):
    shutil.copytree(onnx_export, tmp_path, dirs_exist_ok=True)
    # not installed (the openvino extra): an import that fails, as on a machine without it
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(
        EngineError, match=r"openvino cannot run .*dawnchorus\[openvino\].*--engine"
    ):
        load_ensemble([tmp_path], engine="openvino")
    # a file the engine cannot read
    (tmp_path / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(EngineError, match=r"onnxruntime cannot run .*model.onnx.*model.tflite"):
        load_ensemble([tmp_path])
    # the command reports it as an error (exit status 2), not a traceback
    recording = tmp_path / "r.wav"
    import soundfile as sf

    sf.write(recording, np.zeros(PARAMS.sample_rate * 6, np.float32), PARAMS.sample_rate)
    argv = ["predict", "--models", str(tmp_path), "--out", str(tmp_path / "o"), str(recording)]
    assert main(argv) == 2
    assert "onnxruntime cannot run" in capsys.readouterr().err
    # the fallback works on the same folder
    assert main([*argv, "--engine", "tflite"]) == 0


def test_an_export_of_another_engine_is_named_not_guessed(tmp_path, folds, windows):
    export_tflite(folds[:1], tmp_path / "model.tflite", windows[:8], 1e-3)
    with pytest.raises(Exception, match=r"model.int8.onnx not found: .* was made for tflite-fp32"):
        load_ensemble([tmp_path], engine="onnxruntime", precision="int8")
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["engine"]["engine"] == "tflite" and "tflite-fp32" in card["checks"]


def test_config_refuses_a_precision_the_engine_does_not_run():
    with pytest.raises(ConfigError, match=r"onnxruntime does not run predict\.precision bf16"):
        load_config(
            overrides={"data_dir": "x", "predict": {"engine": "onnxruntime", "precision": "bf16"}}
        )
    assert load_config(
        overrides={"data_dir": "x", "predict": {"engine": "keras", "precision": "bf16"}}
    )


def test_calibration_windows_are_cut_as_prediction_cuts_them_spread_over_each_recording(
    tmp_path, tiny_demo, folds
):
    from dawnchorus.inference.export import audio_calibration
    from dawnchorus.learning.modelcard import read_metadata

    soundscapes = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(b"OggS not really")
    calibration = audio_calibration([broken, *soundscapes], 10, read_metadata(folds[0]))
    # 10 asked of 3 files: up to 4 from each readable one, the broken one passed
    assert calibration.shape == (8, PARAMS.window_frames, PARAMS.n_mels)
    first = [window_features(w, PARAMS) for w in recording_windows(soundscapes[0], PARAMS, 5)]
    # spread over the recording: its first window, its last and two evenly between
    spread = np.linspace(0, len(first) - 1, 4).round().astype(int)
    assert spread[-1] > 3, "the soundscape is longer than four windows"
    np.testing.assert_array_equal(calibration[:4], np.stack(first)[spread].astype(np.float32))
    # one input of each file asked: its first window (the rest of the file is not decoded)
    one_each = audio_calibration(soundscapes, 2, read_metadata(folds[0]))
    np.testing.assert_array_equal(one_each[0], first[0].astype(np.float32))
