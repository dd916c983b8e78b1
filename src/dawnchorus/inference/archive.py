"""Predicting a folder of thousands of recordings: in parallel, with progress, resumable.

Each recording's outputs (`outputs.write_outputs`) are written whole or not at all, and the
folder records what made them (`run_record`: run.json, and recordings.csv, a row per recording
finished). A run started again into the same folder with the same model and settings skips the
recordings finished and unchanged since, deletes the half-written ones' `.part` files and
predicts the rest: every recording is predicted once. Another model or other settings stop it
before anything is predicted, unless it starts over.

Recordings run in `workers` processes of `threads` threads each (a predictor per process, loaded
there), fed from one queue of recordings, longest first so no process is left with a long one at
the end. On 2 cores two processes of one thread beat one process of two threads
(docs/results.md, "Inference engines"): the engines' threads wait on each other inside every
layer, the processes never. Problems (a recording that cannot be decoded, or only part of it)
are listed in problems.csv in the output folder, kept across resumed runs, and end the run with
exit status 1.
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
    COMBINED,
    SUFFIXES,
    DetectionFilter,
    is_complete,
    plan_outputs,
    remove_partial,
    write_outputs,
)
from dawnchorus.inference.run_record import (
    FAILED,
    LEDGER,
    PARTIAL,
    PREDICTED,
    RUN_RECORD,
    Stamp,
    append_ledger,
    ledger_key,
    read_ledger,
    stamp,
)
from dawnchorus.signal.audio import AudioError, find_recordings_in, probe_audio

PROBLEMS = "problems.csv"
PROBLEM_COLUMNS = ["path", "outcome", "decoded_s", "problem"]
_POLL_S = 0.5  # how often the parent checks on its workers while waiting for results


@dataclass(frozen=True)
class Job:
    """One recording to predict and the files it becomes."""

    recording: Path
    outputs: dict[str, Path]
    audio_s: float  # from the header; 0 when the header cannot be read (predicting will say why)
    read_as: Stamp | None = None  # its size and time when the run started


@dataclass(frozen=True)
class OutputSettings:
    keep: DetectionFilter
    formats: tuple[str, ...]
    low_hz: float
    high_hz: float
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # {code: {"common": …}}


@dataclass
class FileResult:
    recording: Path
    windows: int
    audio_s: float
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    decoded_s: float | None = None

    @property
    def outcome(self) -> str:
        if self.error is None:
            return PREDICTED
        return PARTIAL if self.windows else FAILED


@dataclass
class Plan:
    """What a run has to do: the recordings left, those finished by an earlier run (and
    unchanged since), and the problems the earlier runs recorded for those."""

    todo: list[Job]
    done: list[Job]
    earlier_problems: list[tuple[str, str, str, str]]  # PROBLEM_COLUMNS


def find_jobs(
    inputs: Sequence[str | Path], out_dir: str | Path, formats: Sequence[str]
) -> list[Job]:
    """The recordings under `inputs`, the outputs each gets in `out_dir`, and how each is now."""
    planned = plan_outputs(find_recordings_in(inputs), Path(out_dir), formats)
    return [
        Job(recording, outputs, _duration_s(recording), stamp(recording))
        for recording, outputs in planned.items()
    ]


def has_outputs(jobs: Sequence[Job]) -> bool:
    """Whether any of the recordings has an output in the folder already."""
    return any(Path(path).is_file() for job in jobs for path in job.outputs.values())


def plan_archive(jobs: Sequence[Job], out_dir: str | Path) -> Plan:
    """Which of `jobs` an earlier run into `out_dir` finished: its recordings.csv row says the
    recording is as it is now, and its outputs are all there (or it failed with no window, so
    it has none). The `.part` files a killed run left are deleted."""
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        remove_partial(out_dir)
    ledger = read_ledger(out_dir)
    todo, done, problems = [], [], []
    for job in jobs:
        row = ledger.get(ledger_key(job.recording))
        finished = (
            row is not None
            and row.stamp == job.read_as
            and (row.outcome == FAILED or is_complete(job.outputs))
        )
        (done if finished else todo).append(job)
        if finished and row.problem:
            problems.append((str(job.recording), row.outcome, f"{row.decoded_s:.1f}", row.problem))
    return Plan(todo, done, problems)


def start_over(jobs: Sequence[Job], out_dir: str | Path) -> int:
    """Delete what an earlier run left in `out_dir` (the outputs its recordings.csv lists, those
    of `jobs`, problems.csv, the combined tables, the record); the number of files deleted.
    Files the folder's records do not name are left alone: the folder may hold others'."""
    out_dir = Path(out_dir)
    listed = [out_dir / name for row in read_ledger(out_dir).values() for name in row.outputs]
    ours = [
        *listed,
        *(Path(path) for job in jobs for path in job.outputs.values()),
        *(out_dir / (COMBINED + suffix) for suffix in SUFFIXES.values()),
        out_dir / PROBLEMS,
        out_dir / LEDGER,
        out_dir / RUN_RECORD,
    ]
    deleted = 0
    for path in dict.fromkeys(ours):
        if path.is_file():
            path.unlink()
            deleted += 1
    return deleted


def _duration_s(path: Path) -> float:
    try:
        return probe_audio(path).duration_s
    except AudioError:
        return 0.0


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
        if len(prediction.end_s):
            write_outputs(
                prediction,
                predictor.classes,
                predictor.params.window_s,
                output.keep,
                job.outputs,
                output.low_hz,
                output.high_hz,
                output.names,
            )
        else:  # nothing to show: no file, and none left from an earlier version of it
            for path in job.outputs.values():
                Path(path).unlink(missing_ok=True)
        yield FileResult(
            job.recording,
            len(prediction.end_s),
            job.audio_s,
            prediction.error,
            prediction.notes,
            prediction.duration_s,
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
    predicted: int = 0  # whole
    partial: int = 0  # the windows before a problem
    failed: int = 0  # no window
    skipped: int = 0
    windows: int = 0
    audio_s: float = 0.0
    seconds: float = 0.0
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)  # PROBLEM_COLUMNS

    def count(self, result: FileResult) -> None:
        outcome = result.outcome
        self.predicted += outcome == PREDICTED
        self.partial += outcome == PARTIAL
        self.failed += outcome == FAILED
        self.windows += result.windows
        self.audio_s += result.decoded_s or 0.0

    def lines(self) -> list[str]:
        hours = self.audio_s / 3600
        rate = self.audio_s / self.seconds if self.seconds > 0 else float("nan")
        lines = [
            f"{self.predicted} recording(s) predicted ({hours:.2f} h of audio decoded, "
            f"{self.windows} windows) in {self.seconds:.0f} s: {rate:.0f} s of audio per second",
        ]
        if self.partial:
            lines.append(
                f"{self.partial} recording(s) predicted in part: the windows before a problem"
            )
        if self.failed:
            lines.append(f"{self.failed} recording(s) failed: nothing could be predicted")
        if self.skipped:
            lines.append(
                f"{self.skipped} recording(s) skipped: predicted by an earlier run with this "
                "model and these settings, unchanged since"
            )
        if self.problems:
            lines.append(f"problems ({PROBLEMS}):")
            lines += [f"  {path}: {problem}" for path, _, _, problem in self.problems]
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
    """Predict what `plan` has left, calling `progress` per recording; each finished recording
    gets its row in recordings.csv, and problems.csv in `out_dir` lists this run's problems and
    the earlier runs' of recordings now skipped."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(skipped=len(plan.done))
    summary.problems = list(plan.earlier_problems)
    _write_problems(summary.problems, out_dir)
    read_as = {job.recording: job.read_as for job in plan.todo}
    outputs = {job.recording: job.outputs for job in plan.todo}
    start = time.perf_counter()
    for result in predict_jobs(
        plan.todo, load_predictor, predict_settings, output, workers, threads
    ):
        summary.count(result)
        written = [] if result.outcome == FAILED else outputs[result.recording].values()
        append_ledger(
            out_dir,
            result.recording,
            read_as[result.recording],
            result.outcome,
            result.windows,
            result.decoded_s,
            result.error,
            [str(Path(path).relative_to(out_dir)) for path in written],
        )
        if result.error is not None:
            decoded = "" if result.decoded_s is None else f"{result.decoded_s:.1f}"
            summary.problems.append((str(result.recording), result.outcome, decoded, result.error))
            _write_problems(summary.problems, out_dir)
        progress(result)
    summary.seconds = time.perf_counter() - start
    return summary


def _write_problems(problems: Sequence[tuple[str, str, str, str]], out_dir: Path) -> None:
    """problems.csv, rewritten only when it changes: a rerun with nothing to do touches
    nothing in the folder."""
    text = pd.DataFrame(list(problems), columns=PROBLEM_COLUMNS).to_csv(index=False)
    target = out_dir / PROBLEMS
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return
    partial = out_dir / f".{PROBLEMS}.part"
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
