"""Preprocessing benchmark: the spectrogram rule against its own floor and a seed-style baseline.

Measured in one run on one generated data set (ratios are what to compare; the machines are
shared and absolute seconds drift):

  floor      decode + resample + log-mel per file, in one process on one core (no HDF5, no jobs)
  rule x1    `snakemake <all shards>` with --cores 1: the spectrograms rule end to end
  rule x2    the same with --cores 2
  seed       the seed's way: librosa.load -> melspectrogram -> per-clip min-max -> 256x256 resize,
             one file at a time, on one core
  plan       `snakemake -n` on the full config with a 28,564-row train.csv (no audio needed)

Rates are seconds of audio processed per wall-clock second. Usage:
  python benchmarks/preprocess.py [--species 12] [--max-per-species 40] [--shards 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from dawnchorus.config import AudioParams, load_config
from dawnchorus.data.manifest import TRAIN_AUDIO_DIR, read_manifest
from dawnchorus.demo.layout import generate_demo_data, write_catalogue_only
from dawnchorus.signal.audio import load_audio
from dawnchorus.signal.features import log_mel

REPO = Path(__file__).resolve().parents[1]


def snakemake(*args: str, workdir: Path) -> float:
    """Run Snakemake on this repository's workflow; return wall seconds."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args]
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True, capture_output=True)
    return time.perf_counter() - start


def floor_rate(paths: list[Path], params: AudioParams) -> float:
    """Audio seconds per second for bare decode + resample + log-mel on one core."""
    with threadpool_limits(limits=1):
        log_mel(load_audio(paths[0], params.sample_rate, params.max_duration_s), params)  # warm-up
        audio_s, start = 0.0, time.perf_counter()
        for path in paths:
            samples = load_audio(path, params.sample_rate, params.max_duration_s)
            log_mel(samples, params)
            audio_s += len(samples) / params.sample_rate
        return audio_s / (time.perf_counter() - start)


def seed_style_rate(paths: list[Path], params: AudioParams) -> float:
    """The seed's per-file pipeline (librosa end to end, per-clip min-max, 256x256 resize)."""
    import librosa
    from PIL import Image

    def one(path: Path) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples, _ = librosa.load(path, sr=params.sample_rate, duration=params.max_duration_s)
        mel = librosa.feature.melspectrogram(
            y=samples,
            sr=params.sample_rate,
            n_fft=params.n_fft,
            hop_length=params.hop_length,
            n_mels=params.n_mels,
            fmin=params.fmin,
            fmax=params.fmax,
        )
        db = librosa.power_to_db(mel, ref=np.max)
        scaled = (db - db.min()) / (db.max() - db.min() + 1e-8)
        np.asarray(Image.fromarray(scaled.astype(np.float32), mode="F").resize((256, 256)))
        return len(samples) / params.sample_rate

    with threadpool_limits(limits=1):
        one(paths[0])  # warm-up: librosa compiles numba kernels on first use
        start = time.perf_counter()
        audio_s = sum(one(path) for path in paths)
        return audio_s / (time.perf_counter() - start)


def shard_job_figures(results: Path) -> tuple[float, float]:
    """Sum of per-job seconds and the largest per-job peak RSS (MB) from the rule's benchmarks."""
    seconds, peak = 0.0, 0.0
    for tsv in sorted((results / "benchmarks" / "spectrograms").glob("*.tsv")):
        with open(tsv) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        seconds += float(row["s"])
        peak = max(peak, float(row["max_rss"]))
    return seconds, peak


def plan_seconds(workdir: Path) -> float:
    data = write_catalogue_only(workdir / "birdclef_like")
    args = [
        "-n",
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        "--config",
        f"data_dir={data}",
        f"results_dir={workdir / 'plan'}",
    ]
    snakemake(*args, workdir=workdir)  # warm-up (bytecode, caches)
    return min(snakemake(*args, workdir=workdir) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--species", type=int, default=12)
    parser.add_argument("--max-per-species", type=int, default=80)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument(
        "--seed-files", type=int, default=60, help="files timed for the (slow) seed-style baseline"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dawnchorus-bench-") as tmp:
        work = Path(tmp)
        data = work / "data"
        print(f"generating {args.species} x ~{args.max_per_species} recordings ...", flush=True)
        generate_demo_data(
            data,
            n_species=args.species,
            max_per_species=args.max_per_species,
            seed=1,
            n_test_soundscapes=0,
            n_train_soundscapes=0,
        )
        common = [
            "--configfile",
            str(REPO / "config" / "demo.yaml"),
            "--config",
            f"data_dir={data}",
            f"shards={{count: {args.shards}}}",
        ]
        config = load_config(REPO / "config" / "demo.yaml", {"data_dir": str(data)})
        params = AudioParams.from_config(config)

        def results(name: str) -> list[str]:
            return [f"results_dir={work / name}"]

        rule_runs = {}
        for workers in (1, 2):
            name = f"rule_x{workers}"
            snakemake(
                *common,
                *results(name),
                "--cores",
                "1",
                "--",
                str(work / name / "data" / "manifest.csv"),
                workdir=work,
            )
            shards = [
                str(work / name / "spectrograms" / f"shard_{i:03d}.h5") for i in range(args.shards)
            ]
            wall = snakemake(
                *common, *results(name), "--cores", str(workers), "--", *shards, workdir=work
            )
            rule_runs[workers] = (wall, *shard_job_figures(work / name))

        manifest = read_manifest(work / "rule_x1" / "data" / "manifest.csv")
        paths = [data / TRAIN_AUDIO_DIR / name for name in manifest["filename"]]
        stored_s = sum(min(d, params.max_duration_s or d) for d in manifest["duration_s"])
        floor = floor_rate(paths, params)
        step = max(1, len(paths) // args.seed_files)
        seed = seed_style_rate(paths[::step][: args.seed_files], params)
        plan = plan_seconds(work)

    figures = {
        "audio_seconds": round(stored_s, 1),
        "recordings": len(paths),
        "shards": args.shards,
        "cpu_count": os.cpu_count(),
        "floor_rate_per_core": floor,
        "rule_rate_1_worker": stored_s / rule_runs[1][0],
        "rule_rate_2_workers": stored_s / rule_runs[2][0],
        "rule_job_rate_1_worker": stored_s / rule_runs[1][1],
        "peak_rss_mb_per_worker": max(rule_runs[1][2], rule_runs[2][2]),
        "seed_style_rate": seed,
        "plan_seconds_28564_rows": plan,
    }
    figures["rule_x1_vs_floor"] = figures["rule_rate_1_worker"] / floor
    figures["rule_job_vs_floor"] = figures["rule_job_rate_1_worker"] / floor
    figures["rule_x2_vs_x1"] = figures["rule_rate_2_workers"] / figures["rule_rate_1_worker"]
    figures["rule_x1_vs_seed_style"] = figures["rule_rate_1_worker"] / seed

    print(
        f"\n{len(paths)} recordings, {stored_s / 3600:.2f} h of audio stored, "
        f"{args.shards} shards, {os.cpu_count()} CPU(s)"
    )
    print(f"{'':32}{'audio s / s':>14}{'ratio':>34}")
    print(f"{'floor: decode+resample+mel':32}{floor:14.0f}")
    print(
        f"{'rule, 1 worker (end to end)':32}{figures['rule_rate_1_worker']:14.0f}"
        f"{figures['rule_x1_vs_floor']:12.2f} x floor (target >= 0.7)"
    )
    print(
        f"{'rule, 1 worker (job time)':32}{figures['rule_job_rate_1_worker']:14.0f}"
        f"{figures['rule_job_vs_floor']:12.2f} x floor"
    )
    print(
        f"{'rule, 2 workers (end to end)':32}{figures['rule_rate_2_workers']:14.0f}"
        f"{figures['rule_x2_vs_x1']:12.2f} x 1 worker (target >= 1.8)"
    )
    print(
        f"{'seed-style baseline':32}{seed:14.0f}"
        f"{figures['rule_x1_vs_seed_style']:12.2f} x: rule 1 worker / seed-style"
    )
    print(f"peak RSS per worker: {figures['peak_rss_mb_per_worker']:.0f} MB (target <= 1024)")
    print(f"snakemake -n, 28,564-row train.csv: {plan:.2f} s (target <= 3)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "preprocess.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {args.out / 'preprocess.json'}")


if __name__ == "__main__":
    main()
