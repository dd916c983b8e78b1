#!/usr/bin/env bash
# Install the Debian packages of a single-node SLURM cluster with accounting: slurmctld, slurmd,
# slurmdbd, munge and MariaDB (the SLURM executor plugin polls job states with sacct, which needs
# slurmdbd). Idempotent: returns at once when everything is already there. Needs root and apt.
set -euo pipefail

needed=(slurmctld slurmd slurmdbd sacct sbatch munged mariadbd)
missing=()
for program in "${needed[@]}"; do
    command -v "$program" >/dev/null 2>&1 || [[ -x /usr/sbin/$program ]] || missing+=("$program")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "installing SLURM needs root (missing: ${missing[*]})" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "installing SLURM needs apt-get (missing: ${missing[*]})" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
# the packages' scripts would start the daemons (without systemd they cannot): start.sh does it
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmdbd slurm-client munge mariadb-server mariadb-client >/dev/null
