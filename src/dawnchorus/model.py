"""The classifier: a normalised log-mel window in, one logit per class out.

Resizing to `model.image_size` and the grey-to-RGB adapter live inside the model, so training,
prediction and the exported model all see the same input: the (n_mels, frames, 1) window from
`dataset.window_to_image`, in [0, 1].
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
from keras import layers

log = logging.getLogger(__name__)

BACKBONES = {"efficientnet_b0": keras.applications.EfficientNetB0}


class WeightsError(ValueError):
    """Pretrained weights cannot be loaded; the message says what to do."""


@contextlib.contextmanager
def _imagenet_weights_from(path: Path) -> Iterator[None]:
    """Make Keras take its "imagenet" weights from a local file instead of downloading them.

    Building with weights="imagenet" (rather than loading a file into a randomly initialised model)
    matters: only then does Keras add the input rescaling the ImageNet weights were trained with.
    """
    from keras.src.utils import file_utils

    original = file_utils.get_file
    file_utils.get_file = lambda *args, **kwargs: str(path)
    try:
        yield
    finally:
        file_utils.get_file = original


def build_backbone(name: str, weights: str, input_shape: Sequence[int]) -> keras.Model:
    """A headless backbone with global average pooling; it expects RGB in 0..255."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    constructor = BACKBONES[name]
    shape = tuple(input_shape)
    if weights == "none":
        return constructor(include_top=False, weights=None, input_shape=shape, pooling="avg")
    if weights == "imagenet":
        try:
            return constructor(
                include_top=False, weights="imagenet", input_shape=shape, pooling="avg"
            )
        except Exception as error:  # urllib/HTTP/OS errors differ by platform; all mean "offline"
            raise WeightsError(
                f"could not download the ImageNet weights for {name} ({error}). On a machine "
                "with internet, download the Keras weights file (efficientnetb0_notop.h5) and "
                "set model.weights to its local path."
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"model.weights: file '{weights}' does not exist (use 'none', 'imagenet' or the "
            "path of a local weights file)"
        )
    try:
        with _imagenet_weights_from(path):
            return constructor(
                include_top=False, weights="imagenet", input_shape=shape, pooling="avg"
            )
    except Exception as error:
        raise WeightsError(f"model.weights: cannot load '{path}' into {name}: {error}") from None


def build_model(
    num_classes: int,
    input_shape: Sequence[int],
    image_size: Sequence[int],
    backbone: str = "efficientnet_b0",
    weights: str = "none",
    dropout: float = 0.2,
    bn_momentum: float | None = None,
) -> keras.Model:
    """Window (n_mels, frames, 1) in [0, 1] -> resized, grey to RGB, backbone, dropout, logits.

    The logits layer computes in float32 under a mixed-precision policy. `bn_momentum` replaces
    the backbone's BatchNormalization momentum (0.99 in Keras): with few steps per epoch, as on a
    CPU, the moving statistics otherwise lag far behind the weights and validation looks random.
    """
    height, width = image_size
    inputs = keras.Input(shape=tuple(input_shape), name="log_mel_window")
    # antialias: shrinking 313 frames to a few dozen columns by plain bilinear sampling would skip
    # most frames, and with them short calls
    x = layers.Resizing(height, width, interpolation="bilinear", antialias=True, name="resize")(
        inputs
    )
    x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = layers.Rescaling(255.0, name="to_0_255")(x)  # Keras' EfficientNet rescales 0..255 itself
    features = build_backbone(backbone, weights, (height, width, 3))
    if bn_momentum is not None:
        for layer in features.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum
    x = features(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=f"dawnchorus_{backbone}")
