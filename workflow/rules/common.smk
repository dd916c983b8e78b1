"""Config validation, path helpers and input functions shared by every rule file."""

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from dawnchorus.config import ConfigError, validate_config

min_version("9.0")

if not config:
    raise WorkflowError(
        "no configuration: pass --configfile config/config.yaml (or config/demo.yaml, "
        "config/debug.yaml); the workflow profile profiles/default does this unless it is "
        "switched off with --workflow-profile none"
    )
try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

DATA_DIR = Path(config["data_dir"])
RESULTS_DIR = Path(config["results_dir"])
SHARD_IDS = [f"{shard:03d}" for shard in range(config["shards"]["count"])]

if not DATA_DIR.is_dir():
    raise WorkflowError(
        f"data_dir '{DATA_DIR}' does not exist (relative to {Path.cwd()}): point data_dir at a "
        "folder in the BirdCLEF 2025 layout, e.g. --config data_dir=/path/to/birdclef-2025, "
        "or generate the demo set with `make demo-data`"
    )


wildcard_constraints:
    shard=r"\d{3}",


def data_path(*parts):
    return str(DATA_DIR.joinpath(*parts))


def results_path(*parts):
    return str(RESULTS_DIR.joinpath(*parts))


def log_path(*parts):
    return results_path("logs", *parts)


def benchmark_path(*parts):
    return results_path("benchmarks", *parts)


def shard_files():
    return expand(results_path("spectrograms", "shard_{shard}.h5"), shard=SHARD_IDS)


def debug_max_samples():
    """Manifest subsampling applies in debug mode only."""
    return config["debug"]["max_samples"] if config["debug"]["enabled"] else None
