# Shared by start-local-slurm.sh and stop-local-slurm.sh (sourced, not run).
# Stop the daemon named by a pid file and wait up to 10 s for it to exit.
stop_daemon() {
    local pidfile=$1 pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}
