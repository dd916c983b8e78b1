"""A distributed hyperparameter search (`tuner.workers` > 0): rules tune_chief and tune_worker.

It uses Keras Tuner's own protocol: the chief holds the oracle and trains nothing; workers ask it
for trials over gRPC (KERASTUNER_ORACLE_IP/PORT, KERASTUNER_TUNER_ID). The chief picks a free
port and publishes its address in `<tuning dir>/work/oracle.json`, which workers wait for, so no
port or host has to be configured on a cluster.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from dawnchorus.artifacts import read_json_or_empty, write_json
from dawnchorus.learning.fold_data import DataPaths, open_fold
from dawnchorus.learning.tune import (
    CHIEF_ID,
    TuningError,
    make_tuner,
    prepare_search_dir,
    search_fingerprint,
    search_trials,
    summarise,
    write_results,
)
from dawnchorus.runtime import configure_tensorflow

log = logging.getLogger(__name__)


def _address_file(work_dir: Path) -> Path:
    return work_dir / "oracle.json"


def _chief_endpoint(oracle_host: str | None) -> tuple[str, str]:
    """(address to bind, address workers connect to)."""
    if oracle_host:
        return (
            "127.0.0.1" if oracle_host in ("127.0.0.1", "localhost") else "0.0.0.0"
        ), oracle_host
    if "SLURM_JOB_ID" in os.environ:  # workers run on other nodes
        return "0.0.0.0", socket.getfqdn()
    return "127.0.0.1", "127.0.0.1"


def _free_port(bind: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((bind, 0))
        return probe.getsockname()[1]


def run_chief(config: Mapping, work_dir: Path, results_json: Path, trials_csv: Path) -> dict:
    """Hold the oracle until every trial is done, then write the results (trains nothing)."""
    prepare_search_dir(work_dir, config)
    _address_file(work_dir).unlink(missing_ok=True)  # an earlier chief's
    bind, advertised = _chief_endpoint(config["tuner"]["oracle_host"])
    port = _free_port(bind)
    os.environ.update(
        KERASTUNER_TUNER_ID=CHIEF_ID, KERASTUNER_ORACLE_IP=bind, KERASTUNER_ORACLE_PORT=str(port)
    )
    tuner = make_tuner(config, None, work_dir)
    address = {
        "host": advertised,
        "port": port,
        "fingerprint": search_fingerprint(config),
        "chief_pid": os.getpid(),
        "chief_host": socket.gethostname(),
        "finished": False,
    }
    write_json(_address_file(work_dir), address)
    log.info("chief listening on %s:%d for %d worker(s)", bind, port, config["tuner"]["workers"])
    search_trials(tuner, config)
    # workers that come late see that there is nothing left to do
    write_json(_address_file(work_dir), {**address, "finished": True})
    results = summarise(tuner.oracle, config)
    write_results(results, results_json, trials_csv)
    return results


def _wait_for_chief(work_dir: Path, config: Mapping, started: float) -> dict:
    """The address of this search's chief, once it has published it."""
    wait_s = config["tuner"]["worker_wait_min"] * 60
    wanted = search_fingerprint(config)
    while True:
        address = read_json_or_empty(_address_file(work_dir))
        # a running chief's address counts once it answers: a killed one's never does
        if address.get("fingerprint") == wanted and (
            address.get("finished") or _chief_reachable(address)
        ):
            return address
        if time.monotonic() - started > wait_s:
            raise TuningError(
                f"the tuning chief did not publish its address in {_address_file(work_dir)} "
                f"within {config['tuner']['worker_wait_min']} min (tuner.worker_wait_min): is "
                "the tune_chief job running?"
            )
        time.sleep(1.0)


def _chief_reachable(address: Mapping) -> bool:
    try:
        with socket.create_connection((address["host"], int(address["port"])), timeout=5):
            return True
    except OSError:
        return False


def run_worker(
    config: Mapping,
    paths: DataPaths,
    work_dir: Path,
    worker: int,
    out_json: Path,
    threads: int = 1,
) -> dict:
    """Train the trials the chief hands out until it has none left; returns what was run."""
    from keras_tuner.src.distribute import oracle_client

    started = time.monotonic()
    tuner_id = f"worker_{worker}"
    address = _wait_for_chief(work_dir, config, started)
    ran: list[str] = []
    if address["finished"]:
        log.info("the chief has already finished the search: nothing left for %s", tuner_id)
    else:
        os.environ.update(
            KERASTUNER_TUNER_ID=tuner_id,
            KERASTUNER_ORACLE_IP=str(address["host"]),
            KERASTUNER_ORACLE_PORT=str(address["port"]),
        )
        # a call to a chief that has gone away would otherwise wait for an hour
        oracle_client.TIMEOUT = max(60, int(config["tuner"]["worker_wait_min"] * 60))
        configure_tensorflow(threads, config["training"]["mixed_precision"], config["seed"])
        with open_fold(config, config["tuner"]["fold"], paths) as data:
            tuner = make_tuner(config, data, work_dir)
            log.info(
                "%s connects to the chief at %s:%s", tuner_id, address["host"], address["port"]
            )
            try:
                tuner.search(verbose=1)
            except Exception as error:
                if not _chief_finished(work_dir):
                    raise TuningError(
                        f"{tuner_id} lost the chief at {address['host']}:{address['port']}: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                log.info("the chief finished while %s was asking for a trial", tuner_id)
            ran = tuner.trials_run
    summary = {"tuner_id": tuner_id, "trials": ran, "chief": f"{address['host']}:{address['port']}"}
    write_json(out_json, summary, sort_keys=False)
    return summary


def _chief_finished(work_dir: Path) -> bool:
    return bool(read_json_or_empty(_address_file(work_dir)).get("finished"))
