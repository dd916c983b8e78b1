"""build_model: shapes, the input adapter, float32 logits, and every way of getting weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dawnchorus.learning.model import WeightsError, build_backbone, build_model

INPUT = (128, 313, 1)


def test_window_in_logits_out_with_resize_inside_the_model():
    model = build_model(7, INPUT, image_size=(32, 48), dropout=0.3)
    assert model.input_shape == (None, *INPUT)
    assert model.output_shape == (None, 7)
    assert model.get_layer("resize").output.shape[1:3] == (32, 48)
    logits = model.predict(np.random.default_rng(0).random((2, *INPUT)), verbose=0)
    assert logits.shape == (2, 7) and np.isfinite(logits).all()


def test_logits_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(3, INPUT, image_size=(32, 32))
        assert model.get_layer("logits").compute_dtype == "float32"
        assert model.output.dtype == "float32"
        assert model.get_layer("efficientnetb0").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_bn_momentum_is_applied_and_saved(tmp_path):
    model = build_model(3, INPUT, image_size=(32, 32), bn_momentum=0.9)
    norms = [
        layer
        for layer in model.get_layer("efficientnetb0").layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and all(layer.momentum == 0.9 for layer in norms)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("efficientnetb0").get_layer(norms[0].name).momentum == 0.9


def test_weights_from_a_local_file_are_loaded_with_imagenet_input_scaling(tmp_path):
    # a stand-in for efficientnetb0_notop.h5: same architecture, weights of our own
    source = build_backbone("efficientnet_b0", "none", (32, 32, 3))
    rng = np.random.default_rng(3)
    source.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in source.get_weights()])
    weights_file = tmp_path / "efficientnetb0_notop.weights.h5"
    source.save_weights(weights_file)

    loaded = build_backbone("efficientnet_b0", str(weights_file), (32, 32, 3))
    target_conv = loaded.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(target_conv, source.get_layer("stem_conv").get_weights()[0])

    # only the ImageNet variant divides by the ImageNet standard deviations (a second Rescaling)
    def rescalings(model):
        return sum(isinstance(layer, keras.layers.Rescaling) for layer in model.layers)

    assert (rescalings(source), rescalings(loaded)) == (1, 2)
    model = build_model(4, INPUT, image_size=(32, 32), weights=str(weights_file))
    np.testing.assert_array_equal(
        model.get_layer("efficientnetb0").get_layer("stem_conv").get_weights()[0], target_conv
    )


def test_missing_or_wrong_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_model(3, INPUT, image_size=(32, 32), weights=str(tmp_path / "nope.h5"))
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="cannot load"):
        build_model(3, INPUT, image_size=(32, 32), weights=str(garbage))


def test_imagenet_offline_is_a_clear_error(monkeypatch):
    from keras.src.utils import file_utils

    def no_internet(*args, **kwargs):
        raise OSError("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", no_internet)
    with pytest.raises(WeightsError, match="local path"):
        build_model(3, INPUT, image_size=(32, 32), weights="imagenet")


def test_sed_head_gives_a_crop_logit_and_frames_for_each_window():
    from dawnchorus.learning.model import frame_output, frames_to_segments

    crop = (128, 626, 1)  # two windows
    model = build_model(5, crop, image_size=(32, 64), head="sed")
    assert model.output_shape == (None, 5)
    frames = keras.Model(model.input, frame_output(model))
    assert frames.output_shape == (None, 2, 2, 5)  # 64 columns / 32 = 2 time frames
    x = np.random.default_rng(0).random((3, *crop)).astype("float32")
    logits = model.predict_on_batch(x)
    rows = np.asarray(frames_to_segments(frames.predict_on_batch(x), 2))
    assert rows.shape == (3, 2, 5) and ((rows > 0) & (rows < 1)).all()
    # one segment = the whole crop: the same probability as the crop's logit
    whole = np.asarray(frames_to_segments(frames.predict_on_batch(x), 1))[:, 0]
    np.testing.assert_allclose(whole, 1 / (1 + np.exp(-logits)), atol=1e-5)


def test_segment_probabilities_are_attention_weighted_means_of_their_frames():
    from dawnchorus.learning.model import segment_probabilities

    attention = np.array([[0.0, 2.0, -1.0, 0.5]])  # one class, four frames
    logits = np.array([[0.0, 3.0, -3.0, 1.0]])
    frames = np.stack([attention, logits], axis=-1)[..., None].astype("float32")  # (1, 4, 2, 1)
    weights, probability = np.exp(np.tanh(attention[0])), 1 / (1 + np.exp(-logits[0]))
    two = np.asarray(segment_probabilities(frames, 2))[0, :, 0]
    expected = [
        np.average(probability[:2], weights=weights[:2]),
        np.average(probability[2:], weights=weights[2:]),
    ]
    np.testing.assert_allclose(two, expected, rtol=1e-6)
    one = np.asarray(segment_probabilities(frames, 1))[0, 0, 0]
    assert one == pytest.approx(np.average(probability, weights=weights), rel=1e-6)
    with pytest.raises(ValueError, match="cannot give 5 segments"):
        segment_probabilities(frames, 5)


def test_sed_model_saves_and_loads_with_its_attention_pooling(tmp_path):
    model = build_model(3, (128, 626, 1), image_size=(32, 64), head="sed")
    model.save(tmp_path / "sed.keras")
    loaded = keras.models.load_model(tmp_path / "sed.keras")
    x = np.random.default_rng(1).random((2, 128, 626, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


@pytest.mark.parametrize("head", ["pool", "sed"])
def test_small_cnn_has_efficientnets_stride_and_saves_and_loads(tmp_path, head):
    """The plumbing backbone: the same input adapter, heads, SED frames and file as
    EfficientNet-B0's, about 1/60 of its weights."""
    from dawnchorus.learning.model import frame_output

    crop = (128, 626, 1) if head == "sed" else INPUT
    model = build_model(4, crop, image_size=(32, 64), backbone="small_cnn", head=head)
    backbone = model.get_layer("small_cnn")
    # 32x64 images: a 1x2 feature map (stride 32), or its average
    assert backbone.output_shape == ((None, 1, 2, 128) if head == "sed" else (None, 128))
    assert model.count_params() < build_model(4, crop, (32, 64), head=head).count_params() / 40
    if head == "sed":
        assert keras.Model(model.input, frame_output(model)).output_shape == (None, 2, 2, 4)
    model.save(tmp_path / "small.keras")
    loaded = keras.models.load_model(tmp_path / "small.keras")
    x = np.random.default_rng(2).random((2, *crop)).astype("float32")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


def test_small_cnn_refuses_pretrained_weights():
    with pytest.raises(WeightsError, match="small_cnn has no pretrained weights"):
        build_model(3, INPUT, image_size=(32, 32), backbone="small_cnn", weights="imagenet")
