"""Input-pipeline benchmark: the training tf.data pipeline from shards against a seed-style one.

Measured in one run on one generated data set (compare ratios; absolute rates drift on shared
machines), with TensorFlow limited to `--threads` (default 2) CPU threads:

  shards (RAM)       dataset.training_dataset as config/demo.yaml draws it: class-balanced
                     recordings, an activity-aware crop from the cached shards, its
                     normalisation, then (aug_prob 1: every augmentation runs) pitch shift,
                     SpecAugment, gain/bias, batch 32, overlay and mixup
  uniform crops      the same with uniform crops (training.sampling.activity_power 0): what the
                     activity weights cost
  shards (streamed)  the same with training.cache_ram_mb = 0: every crop read through h5py
  seed-style         what the seed did every epoch: per sample in a py_function, decode the OGG
                     (librosa.load, 5 s at a random offset), mel spectrogram, dB, min-max, resize
                     to 256x256; then batch 32
  train demo/256     EfficientNet-B0 training steps (batch 32) on in-memory batches, with the
                     demo's head, crop and image size, and the full config's: the CPU images/s
                     the pipeline has to keep up with

Usage: python benchmarks/input_pipeline.py [--species 12] [--max-per-species 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from dawnchorus.config import load_config
from dawnchorus.data.folds import load_labelled_clips
from dawnchorus.data.manifest import TRAIN_AUDIO_DIR
from dawnchorus.data.shards import ClipStore
from dawnchorus.data.stages import PreparedData, run_data_stage
from dawnchorus.demo.layout import generate_demo_data

REPO = Path(__file__).resolve().parents[1]
BATCH = 32


def prepare(root: Path, species: int, per_species: int) -> tuple[dict, PreparedData]:
    data = root / "data"
    generate_demo_data(
        data,
        n_species=species,
        max_per_species=per_species,
        seed=3,
        workers=2,
        n_test_soundscapes=0,
        n_train_soundscapes=0,
    )
    config = load_config(None, {"data_dir": str(data), "shards": {"count": 2}})
    return config, run_data_stage(data, root / "results", config)


def rate(dataset, batches: int, warmup: int = 3) -> float:
    """Samples per second over `batches` batches, after `warmup` batches."""
    iterator = iter(dataset.repeat())
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    samples = 0
    for _ in range(batches):
        images, _ = next(iterator)
        samples += int(images.shape[0])
    return samples / (time.perf_counter() - start)


def shard_pipeline_rate(
    config, prepared: PreparedData, ram_mb: float, batches: int, activity_power: float
) -> float:
    from dawnchorus.config import segments_per_crop
    from dawnchorus.learning.dataset import training_dataset
    from dawnchorus.learning.sampling import CropSampler, class_balanced_weights

    clips = load_labelled_clips(prepared.manifest, prepared.classes, prepared.folds)
    store = ClipStore(prepared.shards, prepared.params, clips.filenames, ram_mb)
    rows = np.flatnonzero(store.available)
    sampler = CropSampler(
        store, prepared.params.crop_frames(segments_per_crop(config)), activity_power
    )
    training = {**config["training"], "overlay_prob": 0.5}
    training["augment"] = {**training["augment"], "pitch_shift_bands": 3}
    data = training_dataset(
        sampler,
        rows,
        clips.targets(1.0),
        training,
        BATCH,
        mixup_alpha=0.4,
        aug_prob=1.0,
        seed=config["seed"],
        row_weights=class_balanced_weights(
            clips.primary[rows], training["sampling"]["class_power"]
        ),
    )
    try:
        return rate(data, batches)
    finally:
        store.close()


def seed_style_rate(config, prepared: PreparedData, batches: int) -> float:
    """Decode + mel + resize per sample inside a py_function, as the seed's loader did."""
    import librosa
    import tensorflow as tf

    clips = load_labelled_clips(prepared.manifest, prepared.classes, prepared.folds)
    paths = [str(Path(config["data_dir"]) / TRAIN_AUDIO_DIR / name) for name in clips.filenames]
    audio = config["audio"]
    window_s = audio["window_s"]
    rng = np.random.default_rng(0)

    def load(path):
        path = path.numpy().decode()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            duration = librosa.get_duration(path=path)
            offset = rng.uniform(0, max(0.0, duration - window_s))
            samples, _ = librosa.load(
                path, sr=audio["sample_rate"], offset=offset, duration=window_s
            )
        samples = np.pad(samples, (0, max(0, int(window_s * audio["sample_rate"]) - len(samples))))
        mel = librosa.feature.melspectrogram(
            y=samples,
            sr=audio["sample_rate"],
            n_fft=audio["n_fft"],
            hop_length=audio["hop_length"],
            n_mels=audio["n_mels"],
            fmin=audio["fmin"],
            fmax=audio["fmax"],
        )
        db = librosa.power_to_db(mel, ref=np.max)
        db = (db - db.min()) / (db.max() - db.min() + 1e-6)
        return tf.image.resize(db[..., None], (256, 256)).numpy().astype(np.float32)

    def example(path, label):
        image = tf.py_function(load, [path], tf.float32)
        image.set_shape((256, 256, 1))
        return image, label

    data = (
        tf.data.Dataset.from_tensor_slices((paths, clips.labels))
        .shuffle(len(paths))
        .map(example, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(BATCH)
        .prefetch(tf.data.AUTOTUNE)
    )
    return rate(data, batches, warmup=1)


def training_rate(model_config: dict, crop_frames: int, steps: int) -> float:
    """EfficientNet-B0 training images/s on batches already in memory."""
    import keras
    import tensorflow as tf

    from dawnchorus.learning.model import build_model

    model = build_model(
        12,
        (128, crop_frames, 1),
        model_config["image_size"],
        bn_momentum=model_config["bn_momentum"],
        head=model_config["head"],
        drop_connect=model_config["drop_connect"],
    )
    model.compile(optimizer="adamw", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    images = tf.random.uniform((BATCH, 128, crop_frames, 1))
    labels = tf.cast(tf.random.uniform((BATCH, 12)) < 0.1, tf.float32)
    data = tf.data.Dataset.from_tensors((images, labels)).repeat(steps + 3)
    model.fit(data.take(3), verbose=0)  # graph build
    start = time.perf_counter()
    model.fit(data.take(steps), verbose=0)
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--species", type=int, default=12)
    parser.add_argument("--max-per-species", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from dawnchorus.config import AudioParams, segments_per_crop

    demo = load_config(REPO / "config" / "demo.yaml")
    full = load_config(REPO / "config" / "config.yaml")

    with tempfile.TemporaryDirectory() as tmp:
        config, prepared = prepare(Path(tmp), args.species, args.max_per_species)
        config = load_config(REPO / "config" / "demo.yaml", {"data_dir": config["data_dir"]})
        activity = config["training"]["sampling"]["activity_power"]
        figures = {
            "pipeline_ram_samples_per_s": shard_pipeline_rate(
                config, prepared, 8192, args.batches, activity
            ),
            "pipeline_uniform_crops_samples_per_s": shard_pipeline_rate(
                config, prepared, 8192, args.batches, 0.0
            ),
            "pipeline_streamed_samples_per_s": shard_pipeline_rate(
                config, prepared, 0, args.batches, activity
            ),
            "seed_style_samples_per_s": seed_style_rate(
                config, prepared, max(2, args.batches // 20)
            ),
        }
    figures["pipeline_vs_seed_style"] = (
        figures["pipeline_ram_samples_per_s"] / figures["seed_style_samples_per_s"]
    )
    figures["activity_vs_uniform_crops"] = (
        figures["pipeline_ram_samples_per_s"] / figures["pipeline_uniform_crops_samples_per_s"]
    )
    for name, setting in (("demo", demo), ("full", full)):
        crop = AudioParams.from_config(setting).crop_frames(segments_per_crop(setting))
        size = "x".join(map(str, setting["model"]["image_size"]))
        figures[f"train_{name}_{size}_images_per_s"] = training_rate(
            setting["model"], crop, 6 if name == "full" else 15
        )
    demo_size = "x".join(map(str, demo["model"]["image_size"]))
    figures["pipeline_vs_train_demo"] = (
        figures["pipeline_ram_samples_per_s"] / figures[f"train_demo_{demo_size}_images_per_s"]
    )
    figures["threads"] = args.threads
    for name, value in figures.items():
        print(f"{name:36s} {value:10.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "input_pipeline.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
