"""Configuration: validation against the workflow's JSON schema, the only place defaults live.

Snakemake's own config loading hands us a plain dict; `validate_config` fills the schema's
defaults into it in place (as `snakemake.utils.validate` does), rejects unknown keys and wrong
types with the dotted key named, checks what a schema cannot express (fmin < fmax, folds that
exist, ...) and applies debug mode. Python code downstream reads the validated dict or a typed
view of one section; it never declares a default of its own.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml

_REPO_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
_PACKAGED_SCHEMA = Path(__file__).resolve().parent / "config.schema.yaml"


# EfficientNet-B0's feature map is 1/32 of its input: a time frame of the SED head per 32 columns
BACKBONE_STRIDE = 32
# BirdNET V2.4 hears 3 s at a time (pretrained.embeddings cuts its windows with this)
BIRDNET_WINDOW_S = 3.0


class ConfigError(ValueError):
    """The configuration is invalid; the message names every offending key."""


def schema_path() -> Path:
    """The workflow's schema: from the checkout when run from one, else the copy in the wheel."""
    for candidate in (_REPO_SCHEMA, _PACKAGED_SCHEMA):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config schema not found at {_REPO_SCHEMA} or {_PACKAGED_SCHEMA}")


@cache
def _load_schema_cached() -> dict:
    with open(schema_path(), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_schema() -> dict:
    """A fresh copy of the schema (default filling puts schema objects into configs)."""
    return copy.deepcopy(_load_schema_cached())


def _default_filling_validator() -> type[jsonschema.protocols.Validator]:
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


_JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def _coerce_cli_strings(value: Any, schema: Mapping) -> Any:
    """Turn strings into the scalar types the schema asks for.

    Snakemake parses a nested `--config 'audio={sample_rate: 16000}'` with YAML's BaseLoader, which
    leaves every scalar a string; without this, nested overrides could never pass validation.
    """
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {
            key: _coerce_cli_strings(item, properties[key]) if key in properties else item
            for key, item in value.items()
        }
    if isinstance(value, list):
        item_schema = schema.get("items", {})
        return [_coerce_cli_strings(item, item_schema) for item in value]
    if not isinstance(value, str):
        return value
    allowed = schema.get("type", [])
    allowed = [allowed] if isinstance(allowed, str) else list(allowed)
    if "string" in allowed and ("enum" not in schema or value in schema["enum"]):
        return value
    wanted = tuple(
        t for name in allowed if name in _JSON_TYPES for t in _flatten(_JSON_TYPES[name])
    )
    if not wanted:
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, bool) and bool not in wanted:
        return value
    if isinstance(parsed, wanted):
        return parsed
    return value


def _flatten(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _dotted(path) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def _describe_error(error: jsonschema.ValidationError) -> str:
    where = _dotted(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - known)
        prefix = "" if where == "<top level>" else where + "."
        return "; ".join(
            f"unknown key '{prefix}{key}' (allowed here: {', '.join(sorted(known))})"
            for key in unknown
        )
    if error.validator == "required":
        return f"{error.message} (at {where})"
    return f"{where}: {error.message}"


# what each export engine runs on a CPU (ONNX Runtime's CPU kernels have no float16 or bfloat16
# convolutions; TFLite's fp16 is float16 weights computed in float32; OpenVINO's bf16 needs a CPU
# with bfloat16 instructions)
ENGINE_PRECISIONS = {
    "tflite": ("fp32", "fp16", "int8"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
}


def _semantic_problems(config: Mapping) -> Iterator[str]:
    """What the schema cannot express: relations between keys."""
    audio = config["audio"]
    nyquist = audio["sample_rate"] / 2
    if audio["fmax"] > nyquist:
        yield f"audio.fmax ({audio['fmax']}) exceeds sample_rate / 2 ({nyquist:g})"
    if audio["fmin"] >= audio["fmax"]:
        yield f"audio.fmin ({audio['fmin']}) must be below audio.fmax ({audio['fmax']})"
    if audio["window_s"] * audio["sample_rate"] < audio["n_fft"]:
        yield "audio.window_s is shorter than one FFT window (n_fft samples)"
    model = config["model"]
    segments = model["input_s"] / audio["window_s"]
    if abs(segments - round(segments)) > 1e-9 or round(segments) < 1:
        yield (
            f"model.input_s ({model['input_s']}) must be a multiple of audio.window_s "
            f"({audio['window_s']}): prediction rows are window_s long"
        )
    elif model["head"] == "pool" and round(segments) != 1:
        yield (
            f"model.head pool predicts whole crops: model.input_s ({model['input_s']}) must "
            f"equal audio.window_s ({audio['window_s']}), or use model.head sed"
        )
    elif model["image_size"][1] // BACKBONE_STRIDE < round(segments):
        yield (
            f"model.image_size width {model['image_size'][1]} gives the SED head "
            f"{model['image_size'][1] // BACKBONE_STRIDE} time frame(s), fewer than the "
            f"{round(segments)} windows of model.input_s: use at least "
            f"{BACKBONE_STRIDE * round(segments)}"
        )
    if config["predict"]["hops_per_window"] > 1 and round(segments) != 1:
        yield (
            "predict.hops_per_window > 1 needs a model of one window per input "
            f"(model.input_s {model['input_s']} = audio.window_s {audio['window_s']})"
        )
    engine, precision = config["predict"]["engine"], config["predict"]["precision"]
    if engine != "keras" and precision not in ENGINE_PRECISIONS[engine]:
        yield (
            f"predict.engine {engine} does not run predict.precision {precision} on a CPU; "
            f"it runs {', '.join(ENGINE_PRECISIONS[engine])}"
        )
    problem = kernel_problem(config["predict"]["smoothing_kernel"])
    if problem:
        yield f"predict.smoothing_kernel {problem}"
    for kernel in config["predict"]["ablation"]["smoothing_kernels"]:
        problem = kernel_problem(kernel)
        if problem:
            yield f"predict.ablation.smoothing_kernels: {list(kernel)} {problem}"
    offsets = config["reference"]["row_window_offsets_s"]
    hop_s = config["reference"]["window_hop_s"]
    if hop_s is not None and hop_s > audio["window_s"]:
        yield (
            f"reference.window_hop_s {hop_s:g}: BirdNET windows this far apart leave parts of "
            f"the rows of audio.window_s ({audio['window_s']:g} s) unheard"
        )
    if hop_s is None and max(offsets) + BIRDNET_WINDOW_S > audio["window_s"] + 1e-9:
        yield (
            f"reference.row_window_offsets_s {offsets}: a {BIRDNET_WINDOW_S:g}-s BirdNET window "
            f"starting at {max(offsets):g} s ends past the row's audio.window_s "
            f"({audio['window_s']:g} s)"
        )
    ensemble = config["ensemble"]
    if ensemble["members"] is not None and "cnn" not in ensemble["members"]:
        yield (
            f"ensemble.members {ensemble['members']} lacks cnn: the submission's rows are the "
            "CNN's windows, so every blend includes it"
        )
    units = 1 / ensemble["weight_step"]
    if abs(units - round(units)) > 1e-9:
        yield f"ensemble.weight_step ({ensemble['weight_step']}) must divide 1 (e.g. 0.05, 0.1)"
    n_folds = config["folds"]["n_folds"]
    for key in ("folds.train", "debug.folds"):
        section, name = key.split(".")
        missing = [fold for fold in config[section][name] if fold >= n_folds]
        if missing:
            yield f"{key} names folds {missing} that do not exist (folds.n_folds = {n_folds})"
    debug = config["debug"]
    trained_key = "debug.folds" if debug["enabled"] else "folds.train"
    trained = debug["folds"] if debug["enabled"] else config["folds"]["train"]
    untrained = sorted(set(config["predict"]["folds"] or []) - set(trained))
    if untrained:
        yield f"predict.folds names untrained folds {untrained} ({trained_key}: {trained})"
    if config["tuner"]["fold"] >= n_folds:
        yield f"tuner.fold ({config['tuner']['fold']}) does not exist (folds.n_folds = {n_folds})"
    for name, bounds in config["search_space"].items():
        if isinstance(bounds, dict) and not bounds["min"] < bounds["max"]:
            yield (
                f"search_space.{name} is empty or inverted "
                f"(min {bounds['min']} must be below max {bounds['max']})"
            )


def _apply_debug(config: dict) -> None:
    debug = config["debug"]
    if debug["enabled"]:
        config["folds"]["train"] = list(debug["folds"])
        config["training"]["epochs"] = debug["epochs"]
        config["tuner"]["epochs"] = debug["epochs"]
        config["tuner"]["max_trials"] = debug["trials"]


def validate_config(config: dict) -> dict:
    """Validate `config` in place: fill defaults, reject unknown keys and bad values, apply debug.

    Raises ConfigError listing every problem with its dotted key. Idempotent.
    """
    schema = load_schema()
    coerced = _coerce_cli_strings(config, schema)
    config.clear()
    config.update(coerced)
    validator = _default_filling_validator()(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe_error(error) for error in errors]
    if not problems:
        problems = list(_semantic_problems(config))
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    _apply_debug(config)
    return config


def windows_per_input(input_s: float, window_s: float) -> int:
    """Prediction windows (rows) in one model input of input_s seconds."""
    return round(input_s / window_s)


def segments_per_crop(config: Mapping) -> int:
    """Prediction windows (rows) in one model input: model.input_s / audio.window_s."""
    return windows_per_input(config["model"]["input_s"], config["audio"]["window_s"])


def section_defaults(name: str) -> dict:
    """The schema's defaults of one top-level section (for commands that take no config file)."""
    section: dict = {}
    _default_filling_validator()(load_schema()["properties"][name]).validate(section)
    return section


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """`base` updated by `override`, recursing into mappings (as Snakemake merges configs)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(path: str | Path | None = None, overrides: Mapping | None = None) -> dict:
    """Read a YAML config file (optional), merge overrides and validate."""
    config: dict = {}
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: a config file must hold a mapping, not {type(config)}")
    return validate_config(deep_merge(config, overrides or {}))


@dataclass(frozen=True)
class AudioParams:
    """Typed view of the `audio` section: everything that defines a stored or predicted window."""

    sample_rate: int
    window_s: float
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    max_duration_s: float | None
    min_peak_dbfs: float

    @classmethod
    def from_config(cls, config: Mapping) -> AudioParams:
        """From a validated config (whole or its `audio` section)."""
        audio = config.get("audio", config)
        return cls(**{name: audio[name] for name in cls.__dataclass_fields__})

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def window_frames(self) -> int:
        """Frames `features.log_mel` returns for exactly one window of audio (centred frames)."""
        return 1 + self.window_samples // self.hop_length

    def crop_frames(self, segments: int) -> int:
        """Frames of a model input of `segments` consecutive windows (as prediction joins them)."""
        return segments * self.window_frames

    @property
    def max_samples(self) -> int | None:
        if self.max_duration_s is None:
            return None
        return math.ceil(self.max_duration_s * self.sample_rate)

    def feature_attrs(self) -> dict[str, float | int]:
        """Parameters that make two spectrograms comparable (stored in every shard)."""
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "fmin": float(self.fmin),
            "fmax": float(self.fmax),
        }


def kernel_problem(kernel: Sequence[float]) -> str | None:
    """Why `kernel` cannot smooth window rows, or None."""
    weights = np.asarray(kernel, dtype=np.float64)
    if weights.ndim != 1 or len(weights) % 2 == 0:
        return f"needs an odd number of weights (centred on the window), not {len(weights)}"
    if (weights < 0).any() or weights.sum() <= 0:
        return "needs non-negative weights with a positive sum"
    return None
