from __future__ import annotations

import copy

import pytest
from support import REPO_ROOT

from dawnchorus.config import AudioParams, ConfigError, load_config, load_schema, validate_config


def walk_properties(schema, path=()):
    for name, sub in schema.get("properties", {}).items():
        yield (*path, name), sub
        yield from walk_properties(sub, (*path, name))


def test_every_schema_key_has_type_description_and_default():
    schema = load_schema()
    required = set(schema.get("required", []))
    for path, sub in walk_properties(schema):
        dotted = ".".join(path)
        assert "type" in sub, f"{dotted} has no type"
        assert sub.get("description"), f"{dotted} has no description"
        if path[0] not in required:
            assert "default" in sub, f"{dotted} has no default"
        if sub.get("type") == "object":
            assert sub.get("additionalProperties") is False, f"{dotted} accepts unknown keys"


def test_defaults_come_from_the_schema():
    config = load_config(overrides={"data_dir": "somewhere"})
    schema = load_schema()
    for path, sub in walk_properties(schema):
        if "default" not in sub or sub.get("type") == "object":
            continue
        value = config
        for part in path:
            value = value[part]
        assert value == sub["default"], ".".join(path)


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError) as error:
        load_config(overrides={"data_dir": "x", "bogus": 1, "audio": {"smaple_rate": 16000}})
    message = str(error.value)
    assert "'bogus'" in message
    assert "'audio.smaple_rate'" in message


def test_wrong_types_are_named_all_at_once():
    with pytest.raises(ConfigError) as error:
        load_config(overrides={"data_dir": "x", "seed": "abc", "audio": {"n_mels": 12.5}})
    message = str(error.value)
    assert "seed:" in message and "audio.n_mels:" in message


def test_missing_data_dir():
    with pytest.raises(ConfigError, match="data_dir"):
        load_config(overrides={})


def test_nested_command_line_strings_are_coerced():
    # Snakemake's --config 'audio={sample_rate: 16000}' delivers every nested scalar as a string
    config = load_config(
        overrides={
            "data_dir": "x",
            "audio": {"sample_rate": "16000", "fmax": "7500.5", "max_duration_s": "null"},
            "folds": {"train": ["0", "2"]},
            "debug": {"enabled": "true"},
            "training": {"mixed_precision": "false"},
        }
    )
    assert config["audio"]["sample_rate"] == 16000
    assert config["audio"]["fmax"] == 7500.5
    assert config["audio"]["max_duration_s"] is None
    assert config["debug"]["enabled"] is True
    assert config["training"]["mixed_precision"] is False
    with pytest.raises(ConfigError, match=r"audio\.sample_rate"):
        load_config(overrides={"data_dir": "x", "audio": {"sample_rate": "fast"}})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"audio": {"fmax": 20000}}, "audio.fmax"),
        ({"audio": {"fmin": 9000, "fmax": 8000}}, "audio.fmin"),
        ({"folds": {"n_folds": 3, "train": [0, 3]}}, "folds.train"),
        ({"search_space": {"dropout": {"min": 0.4, "max": 0.2}}}, "search_space.dropout"),
        (
            {"search_space": {"learning_rate": {"min": 0.01, "max": 0.01}}},
            "search_space.learning_rate",
        ),
        ({"model": {"input_s": 7.5}}, r"model.input_s \(7.5\) must be a multiple"),
        ({"model": {"head": "pool", "input_s": 10}}, "model.head pool predicts whole crops"),
        ({"model": {"head": "sed", "input_s": 20, "image_size": [64, 64]}}, "use at least 128"),
    ],
)
def test_relations_between_keys(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(overrides={"data_dir": "x", **overrides})


def test_debug_mode_replaces_training_keys_and_is_idempotent():
    config = load_config(overrides={"data_dir": "x", "debug": {"enabled": True, "folds": [1]}})
    assert config["folds"]["train"] == [1]
    assert config["training"]["epochs"] == config["debug"]["epochs"]
    assert config["tuner"]["max_trials"] == config["debug"]["trials"]
    again = validate_config(copy.deepcopy(config))
    assert again == config


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "debug.yaml"])
def test_shipped_configs_validate(name):
    config = load_config(REPO_ROOT / "config" / name)
    assert config["data_dir"]


def test_debug_config_is_the_seed_debug_mode():
    config = load_config(REPO_ROOT / "config" / "debug.yaml")
    assert config["debug"]["enabled"]
    assert config["debug"]["max_samples"] <= 1000
    assert config["folds"]["train"] == [0]
    assert config["training"]["epochs"] == 2
    assert config["tuner"]["max_trials"] == 3


def test_audio_params_view():
    config = load_config(overrides={"data_dir": "x"})
    params = AudioParams.from_config(config)
    assert params.sample_rate == config["audio"]["sample_rate"]
    assert params.window_frames == 1 + params.window_samples // params.hop_length
