"""The exported ensemble in the file each engine and precision runs (`runtimes.engine_file`).

Every file comes from the same graph: the TFLite converter's, from the ensemble's tf.function
(`engines.ensemble_function`). ONNX is converted from the TFLite file (tf2onnx), so TFLite,
ONNX Runtime and OpenVINO run the same operations. The quantised files are calibrated on real
windows from the shards.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from dawnchorus.inference.runtimes import EngineError, engine_file

log = logging.getLogger(__name__)

_ONNX_OPSET = 17


def tflite_model(function, precision: str = "fp32", calibration: np.ndarray | None = None) -> bytes:
    """The TFLite model of `function` (an `ensemble_function`): fp32; fp16 (weights stored in
    float16); int8 (weights and activations, ranges from `calibration` windows, float input
    and output so callers see no difference)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        windows = np.asarray(calibration, dtype=np.float32)
        converter.representative_dataset = lambda: ([window[None]] for window in windows)
    return converter.convert()


def onnx_from_tflite(tflite: bytes, out: Path) -> None:
    """The TFLite model as ONNX (tf2onnx), written to `out`."""
    import tf2onnx

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "model.tflite"
        source.write_bytes(tflite)
        tf2onnx.convert.from_tflite(str(source), opset=_ONNX_OPSET, output_path=str(out))


def quantize_onnx(model: Path, out: Path, calibration: np.ndarray) -> None:
    """Static int8 quantisation (QDQ: weights per channel, activations uint8 by min-max over
    `calibration` windows): the format both ONNX Runtime and OpenVINO run as int8."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = onnx.load(str(model), load_external_data=False).graph.input[0].name
    windows = np.asarray(calibration, dtype=np.float32)

    class Windows(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(windows)

        def get_next(self):
            window = next(self.remaining, None)
            return None if window is None else {input_name: window[None]}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # symbolic shape inference needs sympy and gains nothing on a graph of fixed shapes
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Windows(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )


def write_engine_file(
    engine: str,
    precision: str,
    function,
    tflite: bytes,
    folder: Path,
    calibration: np.ndarray,
) -> Path:
    """Write the file `engine` runs in `precision` into `folder` (from the fp32 TFLite model
    `tflite`, or for TFLite's own reduced precisions from `function`); its path."""
    out = folder / engine_file(engine, precision)
    if out.name == engine_file("tflite", "fp32"):
        out.write_bytes(tflite)
    elif out.suffix == ".tflite":
        out.write_bytes(tflite_model(function, precision, calibration))
    else:
        fp32 = folder / engine_file("onnxruntime", "fp32")
        try:
            if not fp32.is_file():
                onnx_from_tflite(tflite, fp32)
            if precision == "int8":
                quantize_onnx(fp32, out, calibration)
        except ImportError as error:
            raise EngineError(
                f"{engine} {precision} needs an ONNX file, and making it needs the onnx extra "
                f"(pip install 'dawnchorus[onnx]'): {error}. The default engine, tflite, "
                "needs nothing more"
            ) from None
    log.info("%s written for %s %s", out.name, engine, precision)
    return out
