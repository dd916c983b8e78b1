from __future__ import annotations

import fcntl
import json
import os
import traceback
from pathlib import Path

import pytest
from support import TINY_DEMO, DebugRun, run_debug_dag

from dawnchorus.demo.layout import generate_demo_data

# `make test` hands whole files to two processes in this order (--dist loadscope
# --no-loadscope-reorder), the others after them. test_workflow.py first: its first test starts
# the shared debug run (`debug_run`), about 7 minutes of its process; test_cluster.py, which
# copies that run, comes after files that keep the other process busy about as long.
FILES_FIRST = (
    "test_workflow.py",
    "test_workflow_stages.py",
    "test_engines.py",
    "test_tune.py",
    "test_train.py",
    "test_model.py",
    "test_cluster.py",
    "test_predict.py",
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With DAWNCHORUS_TEST_TIMELINE=FILE, a line per test (process, start, end, test) in FILE:
    where each of the two processes spends its time, to balance FILES_FIRST."""
    timeline = os.environ.get("DAWNCHORUS_TEST_TIMELINE")
    if not timeline:
        return (yield)
    import time

    start = time.time()
    try:
        return (yield)
    finally:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(timeline, "a", encoding="utf-8") as handle:
            handle.write(f"{worker}\t{start:.1f}\t{time.time():.1f}\t{item.nodeid}\n")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return FILES_FIRST.index(name) if name in FILES_FIRST else len(FILES_FIRST)

    items.sort(key=rank)  # stable: within a file, and among the other files, the usual order


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A small generated demo set (read-only for tests: copy before changing it)."""
    root = tmp_path_factory.mktemp("tiny_demo")
    generate_demo_data(root, **TINY_DEMO)
    return root


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory) -> DebugRun:
    """The whole debug DAG (CI's run: the tiny demo set with bad rows) once per `pytest` run,
    shared by both test processes: the first to ask runs it, the other waits for it. Read-only:
    a test that reruns part of it works on `debug_run.copy_to(tmp_path / ...)`."""
    base = tmp_path_factory.getbasetemp()
    # under xdist each process has its own base folder, in one folder of the run
    root = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "debug_run"
    # iterating on the tests that read it: one run kept across pytest invocations (made anew
    # where its folder holds none; stale once the workflow's code changes)
    root = Path(os.environ.get("DAWNCHORUS_TEST_DEBUG_RUN", root))
    root.mkdir(parents=True, exist_ok=True)
    outcome = root / "outcome.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not outcome.exists():
            try:
                run_debug_dag(root / "workdir")
                outcome.write_text(json.dumps({"ok": True}))
            except BaseException:
                outcome.write_text(json.dumps({"error": traceback.format_exc()[-8000:]}))
                raise
    recorded = json.loads(outcome.read_text())
    if "error" in recorded:
        pytest.fail(f"the shared debug run failed:\n{recorded['error']}")
    return DebugRun(root / "workdir")


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory, tiny_demo):
    """The data stage run in-process on the tiny demo set: manifest, folds and two shards."""
    from dawnchorus.config import load_config
    from dawnchorus.data.stages import run_data_stage

    config = load_config(None, {"data_dir": str(tiny_demo), "shards": {"count": 2}})
    return run_data_stage(tiny_demo, tmp_path_factory.mktemp("tiny_prepared"), config)


@pytest.fixture(scope="session")
def folds(tmp_path_factory, tiny_demo):
    """Two small fold models of the tiny demo's classes (untrained: different seeds; the small
    backbone)."""
    from support import save_fold_model, taxonomy_classes

    root = tmp_path_factory.mktemp("folds")
    classes = taxonomy_classes(tiny_demo)
    return [save_fold_model(root / f"fold_{k}.keras", classes, seed=k) for k in range(2)]
