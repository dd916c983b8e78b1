#!/usr/bin/env bash
# Start (or complete) a single-node SLURM cluster for the workflow tests: munge, MariaDB, slurmdbd
# (accounting: the executor plugin reads job states with sacct), slurmctld and slurmd, with
# partitions `cpu` (default) and `free-gpu` and one fake V100 GPU. Daemons already running are
# left alone, so after `stop.sh slurmctld` this brings the controller back. Needs root; state and
# daemon logs go to $SLURM_TEST_DIR (default /var/lib/dawnchorus-slurm).
set -euo pipefail

STATE=${SLURM_TEST_DIR:-/var/lib/dawnchorus-slurm}
CLUSTER=dawnchorus
HOST=$(hostname -s)
# marks the configuration files as ours: a SLURM set up by someone else is never overwritten
MARK="# written by dawnchorus tests/cluster/start.sh"
# a character device standing in for a GPU: SLURM only checks that the file exists
FAKE_GPU=/dev/dawnchorus-fake-v100

log() { echo "start.sh: $*" >&2; }
running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # description, seconds, command...
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq "$((seconds * 4))"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    log "timed out waiting for $what (logs in $STATE)"
    return 1
}

for file in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
    if [[ -e $file ]] && ! grep -qF "$MARK" "$file"; then
        log "$file exists and was not written by these tests: not touching this machine's SLURM"
        exit 3
    fi
done

mkdir -p "$STATE"/{ctld,spool} /run/munge /etc/slurm
[[ -e $FAKE_GPU ]] || mknod "$FAKE_GPU" c 1 3

# -- munge (authentication between the daemons and the commands)
chown munge:munge /run/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    runuser -u munge -- /usr/sbin/munged --force
    wait_for munged 10 bash -c 'munge -n </dev/null | unmunge'
fi

# -- MariaDB and the accounting database
if ! mysqladmin ping >/dev/null 2>&1; then
    /etc/init.d/mariadb start >"$STATE/mariadb-start.log" 2>&1
    wait_for MariaDB 30 mysqladmin ping
fi
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
          CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

# -- configuration
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
cat >/etc/slurm/slurmdbd.conf <<CONF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$STATE/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf

cat >/etc/slurm/slurm.conf <<CONF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ReturnToService=2
# no cgroups in containers: track processes by parent id, no CPU binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# memory is enforced by polling each job step's RSS every second and killing it above --mem
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu,gres/gpu:v100
# the executor plugin writes the rule name into the job comment
AccountingStoreFlags=job_comment
GresTypes=gpu
# a cancelled or preempted job gets 5 s between SIGTERM and SIGKILL (default 30)
KillWait=5
# the node claims the CPUs, memory and GPU of a V100 node whatever this machine has (jobs ask
# for 8 CPUs and 32 GB), so the profile's real requests are schedulable
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=16 Sockets=1 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=64000 Gres=gpu:V100:1 State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=free-gpu Nodes=$HOST MaxTime=INFINITE State=UP
CONF

cat >/etc/slurm/gres.conf <<CONF
$MARK
AutoDetect=off
NodeName=$HOST Name=gpu Type=V100 File=$FAKE_GPU
CONF

# -- daemons
start_slurmdbd() {
    /usr/sbin/slurmdbd
    wait_for slurmdbd "$1" sacctmgr -n list cluster
}
if ! sacctmgr -n list cluster >/dev/null 2>&1; then
    # a slurmdbd that runs but does not answer (seen once on a loaded machine) is started again
    if running "$STATE/slurmdbd.pid"; then
        kill "$(cat "$STATE/slurmdbd.pid")" 2>/dev/null || true
        sleep 2
    fi
    start_slurmdbd 60 || {
        log "slurmdbd did not answer: starting it again"
        pkill -x slurmdbd || true
        sleep 2
        start_slurmdbd 60
    }
fi
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! running "$STATE/slurmctld.pid"; then
    /usr/sbin/slurmctld
    wait_for slurmctld 60 scontrol ping
fi
if ! running "$STATE/slurmd.pid"; then
    /usr/sbin/slurmd
fi
wait_for "the node to become idle" 60 bash -c "sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'"
log "cluster $CLUSTER up on $HOST (memory here: $memory_mb MB; node configured with 64000 MB)"
