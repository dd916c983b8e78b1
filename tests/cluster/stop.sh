#!/usr/bin/env bash
# Stop the test cluster that start.sh started: all of it, or only the daemons named
# (`stop.sh slurmctld`). Jobs still running are cancelled first when the whole cluster stops.
set -uo pipefail

STATE=${SLURM_TEST_DIR:-/var/lib/dawnchorus-slurm}

stop_pidfile() {  # name, pidfile
    local pid
    [[ -s $2 ]] || return 0
    pid=$(cat "$2")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 80); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.25
    done
    echo "stop.sh: $1 did not stop within 20 s: killing it" >&2
    kill -9 "$pid" 2>/dev/null
}

if [[ $# -gt 0 ]]; then
    for daemon in "$@"; do
        stop_pidfile "$daemon" "$STATE/$daemon.pid"
    done
    exit 0
fi

if scontrol ping >/dev/null 2>&1; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null
fi
stop_pidfile slurmd "$STATE/slurmd.pid"
stop_pidfile slurmctld "$STATE/slurmctld.pid"
stop_pidfile slurmdbd "$STATE/slurmdbd.pid"
/etc/init.d/mariadb stop >/dev/null 2>&1
if [[ -s /run/munge/munged.pid ]]; then
    stop_pidfile munged /run/munge/munged.pid
fi
exit 0
