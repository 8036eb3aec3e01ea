#!/bin/sh
# tests/services/slurm.sh: a throwaway one-node SLURM cluster for the tests.
#
#   slurm.sh start DIR   a munged of its own (socket in DIR), then slurmctld and slurmd with a slurm.conf
#                        generated in DIR (free loopback ports, state, spool, logs and pids in
#                        DIR); prints the path of slurm.conf (export SLURM_CONF=... to use it)
#   slurm.sh stop DIR    stops slurmd, slurmctld and that munged
#
# Needs root (slurmd runs jobs as their users). Exit 1 with the reason on stderr when a daemon
# cannot start; the node must answer idle within 20 s.
set -eu
# The daemons are not ours to instrument (make sanitize preloads ASan into the specs).
unset LD_PRELOAD
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: slurm.sh start|stop DIR" >&2; exit 2; }
free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
stop_pidfile() {
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
}
case "$cmd" in
start)
    [ "$(id -u)" = 0 ] || { echo "SLURM test cluster needs root (slurmd)" >&2; exit 1; }
    for b in slurmctld slurmd munged sbatch; do
        command -v $b > /dev/null 2>&1 || [ -x /usr/sbin/$b ] || { echo "$b is not installed (apt-get install slurm-wlm munge)" >&2; exit 1; }
    done
    mkdir -p "$dir/state" "$dir/spool"
    # A munged of this cluster's own, on a socket in DIR (slurm.conf's AuthInfo points every
    # daemon and client there): suites running at once each stop only their own.
    [ -f /etc/munge/munge.key ] || { echo "no /etc/munge/munge.key (reinstall munge or run mungekey)" >&2; exit 1; }
    chmod 711 "$dir" && mkdir -p "$dir/munge" && chown munge "$dir/munge"
    sock="$dir/munge/munge.socket"
    runuser -u munge -- /usr/sbin/munged --socket="$sock" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" 2> "$dir/munged.log" ||
        { echo "munged failed: $(cat "$dir/munged.log")" >&2; exit 1; }
    munge -S "$sock" -n | unmunge -S "$sock" > /dev/null 2>&1 || { echo "munge does not work after starting munged" >&2; exit 1; }
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ { print int($2 / 1024 / 2) }' /proc/meminfo)
    cat > "$dir/slurm.conf" <<CONF
ClusterName=moonbert-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    /usr/sbin/slurmctld -f "$dir/slurm.conf" -i > "$dir/slurmctld.out" 2>&1 ||
        { echo "slurmctld failed: $(tail -n 3 "$dir/slurmctld.log" 2>/dev/null | tr '\n' ' ')" >&2; exit 1; }
    /usr/sbin/slurmd -f "$dir/slurm.conf" > "$dir/slurmd.out" 2>&1 ||
        { echo "slurmd failed: $(tail -n 3 "$dir/slurmd.log" 2>/dev/null | tr '\n' ' ')" >&2; exit 1; }
    i=0
    until SLURM_CONF="$dir/slurm.conf" sinfo -h -o %t 2>/dev/null | grep -q idle; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "the SLURM node did not come up idle in 20 s: $(tail -n 2 "$dir/slurmctld.log" | tr '\n' ' ')" >&2; exit 1; }
        sleep 0.2
    done
    echo "$dir/slurm.conf"
    ;;
stop)
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    stop_pidfile "$dir/munge/munged.pid"
    ;;
*) echo "usage: slurm.sh start|stop DIR" >&2; exit 2 ;;
esac
