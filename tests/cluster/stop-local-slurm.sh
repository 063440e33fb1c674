#!/usr/bin/env bash
# Stops the cluster started by tests/cluster/start-local-slurm.sh: cancels its jobs, then stops
# slurmd, slurmctld and munged by their pid files. Safe to run when nothing is running.
set -uo pipefail

RUN_DIR=/run/slurm
export SLURM_CONF=/etc/slurm-emsim/slurm.conf
if command -v scancel >/dev/null 2>&1 && scontrol ping 2>/dev/null | grep -q UP; then
    scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
fi
# shellcheck source=tests/cluster/daemons.sh
. "$(dirname "$0")/daemons.sh"
stop_daemon "$RUN_DIR/slurmd.pid"
stop_daemon "$RUN_DIR/slurmctld.pid"
stop_daemon /run/munge/munged.pid
echo "local SLURM stopped"
