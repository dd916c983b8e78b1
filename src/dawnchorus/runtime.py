"""TensorFlow's process set-up, shared by every job that runs a Keras model (training, tuning,
prediction, export, pseudo-labelling): threads, precision and seeds."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def configure_tensorflow(threads: int, mixed_precision: str | bool, seed: int) -> dict:
    """Threads, precision and seeds; returns what was chosen (recorded in metrics.json)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:  # TensorFlow already ran in this process (a notebook, the tests)
        threads = tf.config.threading.get_intra_op_parallelism_threads() or threads
        log.info("TensorFlow is already initialised: keeping its thread settings")
    gpus = tf.config.list_physical_devices("GPU")
    use_mixed = bool(gpus) if mixed_precision == "auto" else bool(mixed_precision)
    if use_mixed and not gpus:
        log.warning("training.mixed_precision is on but there is no GPU: float16 on a CPU is slow")
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    keras.utils.set_random_seed(seed)
    device = f"{len(gpus)} GPU(s): {[gpu.name for gpu in gpus]}" if gpus else "CPU"
    log.info(
        "TensorFlow %s on %s, %d thread(s), mixed precision %s",
        tf.__version__,
        device,
        threads,
        "on" if use_mixed else "off",
    )
    return {"device": device, "mixed_precision": use_mixed, "threads": threads}
