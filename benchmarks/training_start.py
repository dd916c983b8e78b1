"""Start of a CPU training job: TensorFlow's graph rewrites (Grappler) on against off.

Every fold job and tuning trial traces the EfficientNet-B0 training step once; on a CPU,
`dawnchorus.train.configure_tensorflow(..., training=True)` turns Grappler off for it. This
measures what that buys and costs, each setting in its own fresh process (the setting holds
for a process's graphs), alternating, `--repeats` times: the first step (tracing, rewrites,
first run) and the steady step time after `--warmup` steps, at the demo's shape (128 mel bands x
313 frames resized to 64x128, batch 16, 12 classes, one thread). The ratios are the figures to
keep; the machine's load moves the seconds.

Usage: python benchmarks/training_start.py [--repeats 3] [--steps 30] [--image-size 64 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per setting")
    parser.add_argument("--steps", type=int, default=30, help="timed steady steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-mels", type=int, default=128)
    parser.add_argument("--frames", type=int, default=313)
    parser.add_argument("--image-size", type=int, nargs=2, default=[64, 128])
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(args: argparse.Namespace) -> dict:
    """One process: Grappler as `args.child` says, then the timed steps."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from dawnchorus.model import build_model
    from dawnchorus.train import configure_tensorflow

    configure_tensorflow(args.threads, False, 0)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": args.child == "off"})
    model = build_model(
        num_classes=args.classes,
        input_shape=(args.n_mels, args.frames, 1),
        image_size=args.image_size,
        bn_momentum=0.9,
        drop_connect=0.0,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, args.n_mels, args.frames, 1)).astype("float32")
    y = (rng.uniform(size=(args.batch, args.classes)) < 0.1).astype("float32")
    started = time.perf_counter()
    model.train_on_batch(x, y)  # returns a host value: the step has finished
    first_step_s = time.perf_counter() - started
    for _ in range(args.warmup):
        model.train_on_batch(x, y)
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = model.train_on_batch(x, y)
    return {
        "first_step_s": first_step_s,
        "step_ms": 1000 * (time.perf_counter() - started) / args.steps,
        "loss": float(loss),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    passed = list(argv if argv is not None else sys.argv[1:])
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for _ in range(args.repeats):
        for setting in runs:  # alternating, so a change in the machine's load hits both
            output = subprocess.run(
                [sys.executable, __file__, *passed, "--child", setting],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[setting].append(json.loads(output.strip().splitlines()[-1]))
    summary = {
        setting: {
            key: statistics.median(run[key] for run in results)
            for key in ("first_step_s", "step_ms")
        }
        for setting, results in runs.items()
    }
    for setting, figures in summary.items():
        print(
            f"Grappler {setting:>3}: first step {figures['first_step_s']:5.1f} s, "
            f"then {figures['step_ms']:6.1f} ms/step (median of {args.repeats})"
        )
    on, off = summary["on"], summary["off"]
    print(f"first step, off / on: {off['first_step_s'] / on['first_step_s']:.2f}x")
    print(f"steady step, off / on: {off['step_ms'] / on['step_ms']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
