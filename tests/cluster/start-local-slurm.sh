#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests/test_slurm.py (marker `slurm`).
#
#   bash tests/cluster/start-local-slurm.sh   # install if needed, configure, start, wait for idle
#   bash tests/cluster/stop-local-slurm.sh    # stop the daemons again
#
# Idempotent: packages are installed only when missing, the config is rewritten only when it
# changes (the daemons are then restarted), and running daemons are left alone. Needs root and
# Debian/Ubuntu (apt). No systemd needed: munged, slurmctld and slurmd are started directly.
#
# The config is the one measured to work with Debian's SLURM 22.05 run as root in a container:
# proctrack/linuxproc and task/none (no cgroups), cons_tres with CR_Core_Memory (so jobs are packed
# by cores and by their --mem), no accounting daemon (sacct then has no history, so Snakemake's
# SLURM plugin must query job states with squeue, which MinJobAge=300 keeps visible for 5 minutes
# after a job ends).
#
# The config is written to /etc/slurm-emsim/slurm.conf, not /etc/slurm/slurm.conf, so that a
# machine where this cluster is installed but not running does not slow down every `snakemake`
# call (with the SLURM plugin installed, Snakemake asks slurmctld for its config at start-up and
# waits ~9 s for a controller that is not there). Clients find it through SLURM_CONF; the
# Snakemake job step inside a SLURM job drops SLURM_* variables before it calls srun, so
# /etc/slurm-emsim/bin/srun puts SLURM_CONF back. tests/test_slurm.py sets both; in a shell:
#   . /etc/slurm-emsim/env.sh; sinfo
#
# Environment: SLURM_LOCAL_CPUS / SLURM_LOCAL_MEM_MB override the node size (default: nproc, and
# 90 % of the memory `free -m` reports); SLURM_LOCAL_TIMEOUT (default 60 s) bounds the wait.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "start-local-slurm: must run as root (installs packages, starts daemons)" >&2
    exit 1
fi

CONF_DIR=/etc/slurm-emsim
CONF=$CONF_DIR/slurm.conf
export SLURM_CONF=$CONF
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
NODE=$(hostname -s)
CPUS=${SLURM_LOCAL_CPUS:-$(nproc)}
MEM_MB=${SLURM_LOCAL_MEM_MB:-$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}

# --- packages -----------------------------------------------------------------------------------
missing=()
for cmd in slurmctld slurmd sinfo munged; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "start-local-slurm: installing slurm-wlm and munge (missing: ${missing[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# --- munge ----------------------------------------------------------------------------------------
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
munge_ok() { timeout 5 sh -c 'munge -n </dev/null | unmunge' >/dev/null 2>&1; }
if ! munge_ok; then
    # Not running, or a stale pid file or socket after a hard stop: start it afresh.
    pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = munged ]; then
        kill "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force
    deadline=$((SECONDS + 15))
    until munge_ok; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "start-local-slurm: munged does not answer; see /var/log/munge/munged.log" >&2
            exit 1
        fi
        sleep 0.2
    done
fi

# --- slurm.conf -----------------------------------------------------------------------------------
mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
new_conf=$(
    cat <<EOF
# Written by tests/cluster/start-local-slurm.sh: a one-node test cluster, not for production.
ClusterName=emsim-test
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" >"$CONF"
    changed=1
fi
mkdir -p "$CONF_DIR/bin"
cat >"$CONF_DIR/bin/srun" <<EOF
#!/bin/sh
# srun for the test cluster of tests/cluster/start-local-slurm.sh (see there).
SLURM_CONF=$CONF exec /usr/bin/srun "\$@"
EOF
chmod 0755 "$CONF_DIR/bin/srun"
printf 'export SLURM_CONF=%s\nexport PATH=%s:$PATH\n' "$CONF" "$CONF_DIR/bin" >"$CONF_DIR/env.sh"
# An earlier version of this script wrote the system-wide /etc/slurm/slurm.conf: remove that one.
if grep -qs "Written by tests/cluster/start-local-slurm.sh" /etc/slurm/slurm.conf; then
    rm -f /etc/slurm/slurm.conf
fi

# --- daemons --------------------------------------------------------------------------------------
# shellcheck source=tests/cluster/daemons.sh
. "$(dirname "$0")/daemons.sh"
# Running: the pid file names a live process of that name (not a reused pid after a hard stop).
running() { [ "$(ps -p "$(cat "$1" 2>/dev/null || echo 0)" -o comm= 2>/dev/null)" = "$2" ]; }

if [ "$changed" -eq 1 ]; then
    stop_daemon "$RUN_DIR/slurmd.pid"
    stop_daemon "$RUN_DIR/slurmctld.pid"
fi
deadline=$((SECONDS + TIMEOUT))
if ! running "$RUN_DIR/slurmctld.pid" slurmctld; then
    # -c: a clean start (no jobs or node state from an earlier run of another config).
    /usr/sbin/slurmctld -c -f "$CONF"
fi
until scontrol ping 2>/dev/null | grep -q "is UP"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "start-local-slurm: slurmctld not up after ${TIMEOUT}s; see $LOG_DIR/slurmctld.log" >&2
        exit 1
    fi
    sleep 0.5
done
if ! running "$RUN_DIR/slurmd.pid" slurmd; then
    /usr/sbin/slurmd -f "$CONF"
fi

# --- wait until the node takes jobs ---------------------------------------------------------------
while :; do
    state=$(timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1 || true)
    case "$state" in
        idle | mixed | allocated) break ;;
        down* | drain* | fail*)
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
            ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "start-local-slurm: node $NODE is '${state:-not known}' after ${TIMEOUT}s;" \
            "see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log" >&2
        exit 1
    fi
    sleep 0.5
done
echo "local SLURM up: $(sinfo --version), node $NODE $state, CPUs=$CPUS RealMemory=${MEM_MB}MB," \
    "partition $(sinfo -h -o %P | head -n1), SLURM_CONF=$CONF"
