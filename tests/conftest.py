from __future__ import annotations

import pytest

from dawnchorus.demo.layout import generate_demo_data

# The slowest files first. `make test` hands whole files to two processes in collection order
# (--dist loadscope --no-loadscope-reorder): a file of many minutes begun last runs alone at the
# end (the SLURM file, begun 15 minutes in, took a CI run to 43 minutes). Each of these holds
# several minutes of training or Snakemake runs on two cores (`pytest --durations`).
SLOWEST_FILES_FIRST = (
    "test_cluster.py",
    "test_workflow.py",
    "test_tune.py",
    "test_train.py",
    "test_predict.py",
    "test_engines.py",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return (
            SLOWEST_FILES_FIRST.index(name)
            if name in SLOWEST_FILES_FIRST
            else len(SLOWEST_FILES_FIRST)
        )

    items.sort(key=rank)  # stable: within a file, and among the other files, the usual order


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A small generated demo set (read-only for tests: copy before changing it)."""
    root = tmp_path_factory.mktemp("tiny_demo")
    generate_demo_data(
        root,
        n_species=6,
        max_per_species=8,
        seed=7,
        n_test_soundscapes=2,
        n_train_soundscapes=1,
        workers=2,
    )
    return root


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory, tiny_demo):
    """The data stage run in-process on the tiny demo set: manifest, folds and two shards."""
    from dawnchorus.config import load_config
    from dawnchorus.data.stages import run_data_stage

    config = load_config(None, {"data_dir": str(tiny_demo), "shards": {"count": 2}})
    return run_data_stage(tiny_demo, tmp_path_factory.mktemp("tiny_prepared"), config)


@pytest.fixture(scope="session")
def folds(tmp_path_factory, tiny_demo):
    """Two small fold models of the tiny demo's classes (untrained: different seeds)."""
    from support import save_fold_model, taxonomy_classes

    root = tmp_path_factory.mktemp("folds")
    classes = taxonomy_classes(tiny_demo)
    return [save_fold_model(root / f"fold_{k}.keras", classes, seed=k) for k in range(2)]
