"""The CPU engines that run an exported ensemble: (n, frames, n_mels) chunks -> (n, segments,
classes) probabilities, whatever runs them.

Every engine reads the files rule export writes (`export.export_stage`):

  engine       precision  file               how
  tflite       fp32       model.tflite       LiteRT with XNNPACK (the reference export)
  tflite       fp16       model.fp16.tflite  weights in float16; XNNPACK computes in float32
  tflite       int8       model.int8.tflite  post-training quantisation, float input and output
  onnxruntime  fp32       model.onnx         the TFLite graph converted by tf2onnx
  onnxruntime  int8       model.int8.onnx    static QDQ quantisation (onnxruntime.quantization)
  openvino     fp32/bf16  model.tflite       OpenVINO reads TFLite itself; bf16 is its hint
  openvino     int8       model.int8.onnx    the ONNX Runtime quantisation's QDQ graph

Which is fastest depends on the CPU (docs/results.md measures them); int8 and the reduced
precisions are checked at export by the macro AUC they keep, not by equal probabilities.
ONNX Runtime and OpenVINO are imported only when used: an engine that is not installed or cannot
load its file raises EngineError naming the engine and the fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from dawnchorus.config import ENGINE_PRECISIONS

PRECISIONS = ENGINE_PRECISIONS
ENGINES = tuple(PRECISIONS)
REDUCED = ("fp16", "bf16", "int8")
_FILES = {
    ("tflite", "fp32"): "model.tflite",
    ("tflite", "fp16"): "model.fp16.tflite",
    ("tflite", "int8"): "model.int8.tflite",
    ("onnxruntime", "fp32"): "model.onnx",
    ("onnxruntime", "int8"): "model.int8.onnx",
    ("openvino", "fp32"): "model.tflite",
    ("openvino", "bf16"): "model.tflite",
    ("openvino", "int8"): "model.int8.onnx",
}
ENGINE_FILES = tuple(sorted(set(_FILES.values())))
_INSTALL = {
    "onnxruntime": "pip install 'dawnchorus[onnx]'",
    "openvino": "pip install 'dawnchorus[openvino]'",
}
# Windows per engine call, each engine's fastest on 2 cores: XNNPACK keeps a few windows'
# activations in cache; ONNX Runtime's int8 kernels gain from larger calls (16: 1.5x TFLite
# fp32 at 256x256 model alone, against 1.3x in calls of 4)
CALL_WINDOWS = {"tflite": 4, "onnxruntime": 16, "openvino": 4}

Runner = Callable[[np.ndarray], np.ndarray]


class EngineError(ValueError):
    """An engine cannot run an exported model (not installed, or it cannot read the file)."""


def check_engine(engine: str, precision: str) -> None:
    if engine not in PRECISIONS:
        raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    if precision not in PRECISIONS[engine]:
        raise ValueError(
            f"{engine} does not run {precision} on a CPU; it runs {', '.join(PRECISIONS[engine])}"
        )


def engine_file(engine: str, precision: str) -> str:
    """The export's file (in the export folder) that `engine` runs in `precision`."""
    check_engine(engine, precision)
    return _FILES[(engine, precision)]


def engine_name(engine: str, precision: str) -> str:
    return f"{engine}-{precision}"


def engine_runner(engine: str, precision: str, path: str | Path, threads: int) -> Runner:
    """A function running the exported file `path` on `threads` threads; EngineError when the
    engine is missing or cannot load the file."""
    check_engine(engine, precision)
    path = Path(path)
    try:
        if engine == "tflite":
            invoke = _tflite_invoke(path.read_bytes(), threads)
        elif engine == "onnxruntime":
            invoke = _onnxruntime_invoke(path, threads)
        else:
            invoke = _openvino_invoke(path, threads, precision)
    except Exception as error:  # ImportError, an unsupported op, a corrupt file: all the same
        hint = f" ({_INSTALL[engine]})" if isinstance(error, ImportError) else ""
        fallback = path.with_name(_FILES[("tflite", "fp32")])
        raise EngineError(
            f"{engine} cannot run {path}: {error}{hint}. The fallback is the TFLite export "
            f"{fallback} (predict.engine: tflite, or `dawnchorus predict --engine tflite "
            "--precision fp32`)"
        ) from None
    return in_calls(invoke, CALL_WINDOWS[engine])


def tflite_runner(model: bytes, threads: int) -> Runner:
    """A TFLite model (bytes) in calls of the engine's size."""
    return in_calls(_tflite_invoke(model, threads), CALL_WINDOWS["tflite"])


def in_calls(invoke: Runner, call_windows: int) -> Runner:
    """Every call has `call_windows` windows: a short last one is padded with its own windows,
    since resizing an engine's buffers costs more than predicting the padding (XNNPACK at
    256x256 on 2 threads: 97 windows/s in calls of 4 against 66 in calls of 64)."""

    def run(windows: np.ndarray) -> np.ndarray:
        outputs = []
        for first in range(0, len(windows), call_windows):
            call = windows[first : first + call_windows]
            padded = np.ascontiguousarray(call[np.arange(call_windows) % len(call)], np.float32)
            outputs.append(invoke(padded)[: len(call)])
        return np.concatenate(outputs)

    return run


def _tflite_invoke(model: bytes, threads: int) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=max(1, threads))
    (given,) = interpreter.get_input_details()
    (output,) = interpreter.get_output_details()
    allocated = [0]

    def invoke(windows: np.ndarray) -> np.ndarray:
        if allocated[0] != len(windows):  # reallocating costs: only when the size changes
            interpreter.resize_tensor_input(given["index"], list(windows.shape))
            interpreter.allocate_tensors()
            allocated[0] = len(windows)
        interpreter.set_tensor(given["index"], windows)
        interpreter.invoke()
        return interpreter.get_tensor(output["index"]).copy()

    return invoke


def _onnxruntime_invoke(path: Path, threads: int) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1  # one graph at a time: a second pool would only contend
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda windows: session.run(None, {name: windows})[0]


def _openvino_invoke(path: Path, threads: int, precision: str) -> Runner:
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": max(1, threads),
            # OpenVINO picks bf16 by itself on CPUs that have it: say which precision we mean
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    request = compiled.create_infer_request()
    return lambda windows: request.infer([windows])[compiled.output(0)].copy()
