#!/usr/bin/env bash
# Stops the cluster started by tests/cluster/start-local-slurm.sh: cancels its jobs, then stops
# slurmd, slurmctld and munged by their pid files. Safe to run when nothing is running.
set -uo pipefail

RUN_DIR=/run/slurm
export SLURM_CONF=/etc/slurm-emsim/slurm.conf
if command -v scancel >/dev/null 2>&1 && scontrol ping 2>/dev/null | grep -q UP; then
    scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
fi
stop() {
    local pidfile=$1 pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}
stop "$RUN_DIR/slurmd.pid"
stop "$RUN_DIR/slurmctld.pid"
stop /run/munge/munged.pid
echo "local SLURM stopped"
