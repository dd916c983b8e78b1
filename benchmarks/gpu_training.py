"""Training-step throughput of the fold model on an accelerator: float32 against mixed precision.

The model is `dawnchorus.learning.model.build_model` at the full config's shape (128 mel bands x 313
frames, one 5-s crop, resized to 256x256, EfficientNet-B0 from scratch, 206 classes, batch 64),
trained on in-memory batches, so the figure is what the GPU can consume; the input pipeline has
to deliver that many crops per second (`benchmarks/input_pipeline.py` measures its rate per CPU
core: pass it as --pipeline-rate to see how many cores keep the GPU busy).

Keras runs on any backend here (KERAS_BACKEND, or --backend): the model code is backend-neutral,
so a machine with JAX but no TensorFlow measures the same graph. Both precisions are timed in one
run; the ratio is the figure to keep.

Usage: python benchmarks/gpu_training.py [--backend jax] [--batch 64] [--steps 40]
       [--pipeline-rate CROPS_PER_S_PER_CORE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=None, help="Keras backend (default: KERAS_BACKEND)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation)")
    parser.add_argument("--n-mels", type=int, default=128)
    parser.add_argument("--frames", type=int, default=313)
    parser.add_argument("--image-size", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--classes", type=int, default=206)
    parser.add_argument("--head", default="pool")
    parser.add_argument("--pipeline-rate", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    return parser.parse_args()


def measure(keras, args, policy: str) -> dict:
    """Images per second of `args.steps` training steps under `policy`, after warm-up steps."""
    import numpy as np

    from dawnchorus.learning.model import build_model

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = build_model(
        num_classes=args.classes,
        input_shape=(args.n_mels, args.frames, 1),
        image_size=args.image_size,
        head=args.head,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, args.n_mels, args.frames, 1)).astype("float32")
    y = (rng.uniform(size=(args.batch, args.classes)) < 0.02).astype("float32")
    losses = [float(model.train_on_batch(x, y)) for _ in range(args.warmup)]
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = model.train_on_batch(x, y)  # returns a host value: the step has finished
    seconds = time.perf_counter() - started
    losses.append(float(loss))
    return {
        "policy": policy,
        "images_per_s": args.steps * args.batch / seconds,
        "ms_per_step": 1000 * seconds / args.steps,
        "output_dtype": str(model.output.dtype),
        "losses_finite": bool(np.isfinite(losses).all()),
        "last_loss": losses[-1],
    }


def main() -> int:
    args = parse_args()
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    import keras

    device = keras.backend.backend()
    if device == "jax":
        import jax

        device = f"jax on {jax.devices()[0].device_kind}"
    elif device == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        device = f"tensorflow on {'GPU' if gpus else 'CPU'}"
    print(f"Keras {keras.__version__}, {device}; batch {args.batch}, {args.steps} timed steps")
    results = [measure(keras, args, policy) for policy in ("float32", "mixed_float16")]
    for result in results:
        print(
            f"{result['policy']:>14}: {result['images_per_s']:8.0f} images/s "
            f"({result['ms_per_step']:.1f} ms/step), logits {result['output_dtype']}, "
            f"loss {result['last_loss']:.4f}{'' if result['losses_finite'] else ' NOT FINITE'}"
        )
    full, mixed = results
    print(f"mixed precision / float32: {mixed['images_per_s'] / full['images_per_s']:.2f}x")
    if args.pipeline_rate:
        cores = mixed["images_per_s"] / args.pipeline_rate
        print(f"input-pipeline cores to keep it busy (mixed precision): {cores:.1f}")
    if args.out:
        args.out.write_text(json.dumps({"device": device, "results": results}, indent=2))
    ok = all(r["losses_finite"] for r in results) and mixed["output_dtype"] == "float32"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
