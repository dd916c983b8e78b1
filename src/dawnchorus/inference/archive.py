"""Predicting a folder of thousands of recordings: in parallel, with progress, resumable.

Each recording's outputs (`outputs.write_outputs`) are written whole or not at all, so a run
that was killed and started again skips the recordings whose outputs all exist, deletes the
half-written ones' `.part` files and predicts the rest: every recording is predicted once.

Recordings run in `workers` processes of `threads` threads each (a predictor per process, loaded
there), fed from one queue of recordings, longest first so no process is left with a long one at
the end. On 2 cores two processes of one thread beat one process of two threads
(docs/results.md, "Inference engines"): the engines' threads wait on each other inside every
layer, the processes never. Problems (a recording that cannot be decoded) are collected in
problems.csv in the output folder, kept across resumed runs, and end the run with exit status 1.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dawnchorus.inference.members import Blend, predict_blended
from dawnchorus.inference.outputs import (
    DetectionFilter,
    is_complete,
    plan_outputs,
    remove_partial,
    write_outputs,
)
from dawnchorus.signal.audio import AudioError, find_recordings_in, probe_audio

PROBLEMS = "problems.csv"
_POLL_S = 0.5  # how often the parent checks on its workers while waiting for results


@dataclass(frozen=True)
class Job:
    """One recording to predict and the files it becomes."""

    recording: Path
    outputs: dict[str, Path]
    audio_s: float  # from the header; 0 when the header cannot be read (predicting will say why)


@dataclass(frozen=True)
class OutputSettings:
    keep: DetectionFilter
    formats: tuple[str, ...]
    low_hz: float
    high_hz: float


@dataclass
class FileResult:
    recording: Path
    windows: int
    audio_s: float
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What a run has to do: the recordings left, those complete from an earlier run, and the
    problems an earlier run recorded for those."""

    todo: list[Job]
    done: list[Job]
    earlier_problems: pd.DataFrame


def plan_archive(inputs: Sequence[str | Path], out_dir: str | Path, formats: Sequence[str]) -> Plan:
    """The recordings under `inputs` and their outputs in `out_dir`; those whose outputs all
    exist are done (a resumed run), the `.part` files a killed run left are deleted."""
    out_dir = Path(out_dir)
    found = find_recordings_in(inputs)
    planned = plan_outputs(found, out_dir, formats)
    if out_dir.is_dir():
        remove_partial(out_dir)
    todo, done = [], []
    for recording, outputs in planned.items():
        (done if is_complete(outputs) else todo).append(
            Job(recording, outputs, _duration_s(recording))
        )
    earlier = read_problems(out_dir / PROBLEMS)
    finished = {str(job.recording) for job in done}
    return Plan(todo, done, earlier[earlier["path"].isin(finished)].reset_index(drop=True))


def _duration_s(path: Path) -> float:
    try:
        return probe_audio(path).duration_s
    except AudioError:
        return 0.0


def read_problems(path: Path) -> pd.DataFrame:
    if path.is_file():
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.DataFrame({"path": pd.Series(dtype=str), "problem": pd.Series(dtype=str)})


def predict_jobs(
    jobs: Sequence[Job],
    load_predictor: Callable[[int], Blend],
    predict_settings: Mapping,
    output: OutputSettings,
    workers: int = 1,
    threads: int = 1,
) -> Iterator[FileResult]:
    """Predict `jobs` and write their outputs; a FileResult per recording as it finishes.
    `load_predictor(threads)` makes the predictor (called in each worker process; it must be
    picklable when `workers` > 1). `predict_settings`: batch_size, min_last_window_s,
    smoothing_kernel, top_windows, hops_per_window (`members.predict_blended`)."""
    ordered = sorted(jobs, key=lambda job: -job.audio_s)  # longest first: no long straggler
    workers = max(1, min(workers, len(ordered)))
    if workers == 1:
        yield from _predict_in_process(ordered, load_predictor(threads), predict_settings, output)
        return
    yield from _predict_in_workers(
        ordered, load_predictor, predict_settings, output, workers, threads
    )


def _predict_in_process(
    jobs: Sequence[Job], predictor: Blend, predict_settings: Mapping, output: OutputSettings
) -> Iterator[FileResult]:
    by_recording = {job.recording: job for job in jobs}
    predictions = predict_blended(
        [job.recording for job in jobs],
        predictor,
        predict_settings["batch_size"],
        predict_settings["min_last_window_s"],
        predict_settings["smoothing_kernel"],
        predict_settings["top_windows"],
        predict_settings["hops_per_window"],
    )
    for prediction in predictions:
        job = by_recording[prediction.path]
        write_outputs(
            prediction,
            predictor.classes,
            predictor.params.window_s,
            output.keep,
            job.outputs,
            output.low_hz,
            output.high_hz,
        )
        yield FileResult(
            job.recording,
            len(prediction.end_s),
            job.audio_s,
            prediction.error,
            prediction.notes,
        )


def _worker(load_predictor, threads, jobs, predict_settings, output, tasks, results, parent):
    """A worker process: takes recordings from `tasks` until it is empty; stops when its parent
    is gone (a killed run must not go on writing beside the run that resumes it)."""
    try:
        predictor = load_predictor(threads)
        # a blocking get until this worker's end marker: an empty() or get_nowait() may miss
        # recordings still in the queue's pipe and stop a worker early
        while (index := tasks.get()) is not None and os.getppid() == parent:
            for result in _predict_in_process([jobs[index]], predictor, predict_settings, output):
                results.put(result)
    except BaseException:  # a bug or a model that cannot load: the parent raises it
        results.put(traceback.format_exc())
    results.put(None)


def _predict_in_workers(jobs, load_predictor, predict_settings, output, workers, threads):
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    tasks, results = context.Queue(), context.Queue()
    for index in [*range(len(jobs)), *[None] * workers]:  # each worker ends at a None
        tasks.put(index)
    arguments = (load_predictor, threads, jobs, predict_settings, output, tasks, results)
    processes = [
        context.Process(target=_worker, args=(*arguments, os.getpid()), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    running, received = workers, 0
    try:
        while running:
            try:
                item = results.get(timeout=_POLL_S)
            except queue_module.Empty:
                if not any(process.is_alive() for process in processes) and results.empty():
                    raise RuntimeError("the prediction workers stopped without finishing") from None
                continue
            if item is None:
                running -= 1
            elif isinstance(item, str):
                raise RuntimeError(f"a prediction worker failed:\n{item}")
            else:
                received += 1
                yield item
        if received != len(jobs):  # never silently fewer
            raise RuntimeError(f"{len(jobs) - received} recording(s) were not predicted")
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


@dataclass
class Summary:
    files: int = 0
    skipped: int = 0
    windows: int = 0
    audio_s: float = 0.0
    seconds: float = 0.0
    problems: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        hours = self.audio_s / 3600
        rate = self.audio_s / self.seconds if self.seconds > 0 else float("nan")
        lines = [
            f"{self.files} recording(s) predicted ({hours:.2f} h of audio, {self.windows} "
            f"windows) in {self.seconds:.0f} s: {rate:.0f} s of audio per second",
        ]
        if self.skipped:
            lines.append(f"{self.skipped} recording(s) skipped: their outputs exist already")
        if self.problems:
            lines.append(f"{len(self.problems)} recording(s) could not be (fully) decoded:")
            lines += [f"  {path}: {problem}" for path, problem in self.problems]
        return lines


def run_archive(
    plan: Plan,
    out_dir: str | Path,
    load_predictor: Callable[[int], Blend],
    predict_settings: Mapping,
    output: OutputSettings,
    workers: int,
    threads: int,
    progress: Callable[[FileResult], None] = lambda result: None,
) -> Summary:
    """Predict what `plan` has left, calling `progress` per recording; problems.csv in
    `out_dir` lists this run's problems and the earlier runs' of recordings now skipped."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(skipped=len(plan.done))
    summary.problems = list(plan.earlier_problems.itertuples(index=False, name=None))
    _write_problems(summary.problems, out_dir)
    start = time.perf_counter()
    for result in predict_jobs(
        plan.todo, load_predictor, predict_settings, output, workers, threads
    ):
        summary.files += 1
        summary.windows += result.windows
        summary.audio_s += result.audio_s
        if result.error is not None:
            summary.problems.append((str(result.recording), result.error))
            # at once: the recording's outputs exist, so a resumed run will not meet it again
            _write_problems(summary.problems, out_dir)
        progress(result)
    summary.seconds = time.perf_counter() - start
    return summary


def _write_problems(problems: Sequence[tuple[str, str]], out_dir: Path) -> None:
    partial = out_dir / f".{PROBLEMS}.part"
    pd.DataFrame(list(problems), columns=["path", "problem"]).to_csv(partial, index=False)
    os.replace(partial, out_dir / PROBLEMS)
