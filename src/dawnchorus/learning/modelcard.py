"""What a saved model must carry besides its weights to be used for prediction anywhere.

The class order, the feature parameters and the normalisation it was trained with travel inside
the .keras file (a zip archive; Keras ignores members it does not know) and beside an exported
model, so `dawnchorus predict` needs nothing but the model files. Importing this module is cheap
(no TensorFlow).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from dawnchorus.config import AudioParams, windows_per_input

METADATA_MEMBER = "dawnchorus.json"
METADATA_FORMAT = 2  # 2: the model's input length (input_s) and head


class ModelFileError(ValueError):
    """A saved model cannot be used for prediction; the message names the file and the reason."""


def model_metadata(
    classes: Sequence[str],
    params: AudioParams,
    normalization: str,
    input_s: float | None = None,
    head: str = "pool",
) -> dict:
    """The facts a prediction must reproduce: class order, feature parameters, normalisation,
    how many seconds the model sees at once and whether its head gives per-window rows (sed)."""
    return {
        "format": METADATA_FORMAT,
        "classes": list(classes),
        "audio": {**params.feature_attrs(), "window_s": params.window_s},
        "normalization": normalization,
        "input_s": float(params.window_s if input_s is None else input_s),
        "head": head,
    }


def attach_metadata(keras_path: str | Path, metadata: Mapping) -> None:
    with zipfile.ZipFile(keras_path, "a") as archive:
        archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=1, sort_keys=True))


def read_metadata(keras_path: str | Path) -> dict:
    """The metadata saved with a .keras model; ModelFileError if it is missing or unreadable."""
    path = Path(keras_path)
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read(METADATA_MEMBER))
    except KeyError:
        raise ModelFileError(
            f"{path}: no {METADATA_MEMBER} inside (saved by an older dawnchorus or by plain "
            "Keras): retrain it, e.g. snakemake --forcerun train_fold"
        ) from None
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable .keras model ({error})") from None
    return check_metadata(metadata, path)


def check_metadata(metadata: object, source: str | Path) -> dict:
    if isinstance(metadata, dict) and metadata.get("format") != METADATA_FORMAT:
        raise ModelFileError(
            f"{source}: model metadata format {metadata.get('format')} (this dawnchorus reads "
            f"{METADATA_FORMAT}): retrain the model with this version "
            "(snakemake --forcerun train_fold)"
        )
    keys = ("format", "classes", "audio", "normalization", "input_s", "head")
    if not isinstance(metadata, dict) or any(key not in metadata for key in keys):
        raise ModelFileError(f"{source}: model metadata lacks one of {', '.join(keys)}")
    return metadata


def segments(metadata: Mapping) -> int:
    """Prediction windows (rows) per model input."""
    return windows_per_input(metadata["input_s"], metadata["audio"]["window_s"])


def audio_params(metadata: Mapping) -> AudioParams:
    """The feature parameters of a model, as the feature code takes them."""
    # whole recordings are predicted, and silence is a valid input at prediction time
    return AudioParams(**metadata["audio"], max_duration_s=None, min_peak_dbfs=float("-inf"))
