#!/usr/bin/env bash
# A real SLURM cluster on this machine (Debian/Ubuntu slurmctld + slurmd + munge), for tests and for trying the sbatch
# scripts before a real cluster. It fakes GPUs as GRES so `--gpus-per-node` scripts run unchanged, and it runs one
# slurmd per node name (all on this host, each on its own port), so `-N 2` jobs get two real SLURM nodes: srun starts
# one task per node with SLURM_NODEID 0 and 1, as on a cluster. Every node offers all of this host's CPUs (at least 2).
#
#   slurm/local_cluster.sh install   # apt-get the packages when missing (needs root or sudo)
#   slurm/local_cluster.sh start     # write the config, start munged/slurmctld/slurmd(s) that are not running
#   slurm/local_cluster.sh status    # daemons, nodes, queue
#   slurm/local_cluster.sh stop      # stop the daemons this script started (by PID file), keep the config
#
# Knobs (environment): LOCAL_SLURM_NODES (default 2), LOCAL_SLURM_GPUS (fake GPUs per node, default 2),
# LOCAL_SLURM_STATE (state, logs, fake device nodes; default /var/lib/aligncultura-slurm), SLURM_CONF (default
# /etc/slurm/slurm.conf). After changing a knob: stop, then start. The script never overwrites a slurm.conf it did
# not write (it looks for its own marker line), so it cannot clobber a real cluster's configuration.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
NODES="${LOCAL_SLURM_NODES:-2}"
GPUS="${LOCAL_SLURM_GPUS:-2}"
STATE="${LOCAL_SLURM_STATE:-/var/lib/aligncultura-slurm}"
CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
GRES_CONF="$(dirname "$CONF")/gres.conf"
MARKER="# written by aligncultura slurm/local_cluster.sh"
MUNGE_PID=/run/munge/munged.pid
# The first node is this host; the others are more names for it (slurmd -N NAME), each slurmd on its own port.
NODE_NAMES=("$(hostname -s)")
for ((i = 2; i <= NODES; i++)); do NODE_NAMES+=("$(hostname -s)-$i"); done
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

log() { echo "[local_cluster] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}

cmd_install() {
    local -a missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        log "packages present: ${PACKAGES[*]}"
        return
    fi
    log "installing: ${missing[*]}"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# PID from a pid file, printed only when that process is alive and is the named program.
running_pid() {
    local pidfile=$1 program=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$program" ]] || return 1
    echo "$pid"
}

write_config() {
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to overwrite it (set SLURM_CONF elsewhere)"
    fi
    local cpus mem_mb n name gpu device nodes
    # Every node offers this host's CPUs and ~90% of its RAM, but at least 2 CPUs and 8 GB: the tests' two-GPU jobs ask
    # for 1 CPU and 2G per GPU, and a CI runner may show fewer (CPU affinity, a sandbox's meminfo). SlurmdParameters=
    # config_overrides below makes slurmd trust these numbers instead of draining a node whose hardware reads smaller.
    cpus=$(nproc)
    ((cpus >= 2)) || cpus=2
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    ((mem_mb >= 8192)) || mem_mb=8192
    nodes=$(IFS=,; echo "${NODE_NAMES[*]}")
    mkdir -p "$(dirname "$CONF")" "$STATE"/{ctld,spool,dev}
    {
        cat <<EOF
$MARKER
ClusterName=aligncultura-local
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Short credential lifetime: a requeued job may start again only after its old credential expires (~2.5 min -> ~17 s).
AuthInfo=cred_expire=5
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd-%n.log
# No cgroups in containers/CI VMs: track processes by parentage, do not bind tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# cons_tres + CR_Core lets jobs share a node by cores (CR_Core_Memory ran them one at a time).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Reject impossible requests at submit time instead of leaving them pending forever.
EnforcePartLimits=ALL
SchedulerType=sched/backfill
# A requeued job waits for its begin time, then for a periodic scheduler pass: backfill every second, not every 30.
SchedulerParameters=bf_interval=1
MailProg=/bin/true
MpiDefault=none
# No slurmdbd here: use squeue / scontrol show job, not sacct.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
KillWait=10
MinJobAge=600
GresTypes=gpu
EOF
        for n in "${!NODE_NAMES[@]}"; do
            echo "NodeName=${NODE_NAMES[$n]} NodeHostname=${NODE_NAMES[$n]} NodeAddr=127.0.0.1 Port=$((6818 + n))" \
                "CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$GPUS State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
    } >"$CONF"
    # Fake GPUs: slurm needs character devices (regular files leave CUDA_VISIBLE_DEVICES empty); c 1 3 = /dev/null.
    {
        echo "$MARKER"
        echo "AutoDetect=off"
        for n in "${!NODE_NAMES[@]}"; do
            name=${NODE_NAMES[$n]}
            for ((gpu = n * GPUS; gpu < (n + 1) * GPUS; gpu++)); do
                device=$STATE/dev/fakegpu$gpu
                [[ -c $device ]] || mknod "$device" c 1 3
                echo "NodeName=$name Name=gpu File=$device"
            done
        done
    } >"$GRES_CONF"
    log "config: $CONF (nodes $nodes; each $cpus CPUs, $mem_mb MB, $GPUS fake GPUs)"
}

start_munge() {
    if running_pid "$MUNGE_PID" munged >/dev/null; then
        log "munged already running"
        return
    fi
    if pgrep -x munged >/dev/null; then
        log "a munged not started by this script is running; using it"
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    [[ -s /etc/munge/munge.key ]] || die "/etc/munge/munge.key missing (reinstall the munge package)"
    runuser -u munge -- /usr/sbin/munged
    log "munged started (pid $(<"$MUNGE_PID"))"
}

# start_daemon PROGRAM PIDFILE [ARGS...]: start it unless that pid file names a live PROGRAM.
start_daemon() {
    local program=$1 pidfile=$2 _
    shift 2
    if running_pid "$pidfile" "$program" >/dev/null; then
        log "$program $* already running"
        return
    fi
    "/usr/sbin/$program" -f "$CONF" "$@"
    for _ in $(seq 50); do
        running_pid "$pidfile" "$program" >/dev/null && break
        sleep 0.1
    done
    running_pid "$pidfile" "$program" >/dev/null || die "$program $* did not start; see the logs in $STATE"
    log "$program $* started (pid $(<"$pidfile"))"
}

wait_for_node() {
    local node=$1 state _
    for _ in $(seq 100); do
        state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
        case $state in
            idle* | mixed* | allocated*) log "node $node is $state" && return ;;
            down* | drain*) scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.2
    done
    die "node $node not ready (state '${state:-unknown}'); see $STATE/slurmd-$node.log and $STATE/slurmctld.log"
}

cmd_start() {
    [[ $(id -u) -eq 0 ]] || die "start needs root (SlurmUser=root, fake GPU device nodes)"
    [[ -z $(missing_packages) ]] || die "missing packages: $(missing_packages | xargs); run: $0 install"
    write_config
    start_munge
    start_daemon slurmctld "$STATE/slurmctld.pid"
    local node
    for node in "${NODE_NAMES[@]}"; do start_daemon slurmd "$STATE/slurmd-$node.pid" -N "$node"; done
    export SLURM_CONF="$CONF"
    for node in "${NODE_NAMES[@]}"; do wait_for_node "$node"; done
    [[ $CONF == /etc/slurm/slurm.conf ]] || log "clients need: export SLURM_CONF=$CONF"
}

stop_pid() {
    local program=$1 pidfile=$2 pid _
    pid=$(running_pid "$pidfile" "$program") || return 0
    kill "$pid"
    for _ in $(seq 100); do
        [[ -d /proc/$pid ]] || { log "$program stopped (pid $pid)" && return; }
        sleep 0.1
    done
    log "$program (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -9 "$pid"
}

cmd_stop() {
    local pidfile
    for pidfile in "$STATE"/slurmd-*.pid; do
        [[ -e $pidfile ]] && stop_pid slurmd "$pidfile"
    done
    stop_pid slurmctld "$STATE/slurmctld.pid"
    stop_pid munged "$MUNGE_PID"
}

cmd_status() {
    local node pid
    if pid=$(running_pid "$MUNGE_PID" munged); then echo "munged: running (pid $pid)"; else echo "munged: stopped"; fi
    if pid=$(running_pid "$STATE/slurmctld.pid" slurmctld); then
        echo "slurmctld: running (pid $pid)"
    else
        echo "slurmctld: stopped"
    fi
    for node in "${NODE_NAMES[@]}"; do
        if pid=$(running_pid "$STATE/slurmd-$node.pid" slurmd); then
            echo "slurmd $node: running (pid $pid)"
        else
            echo "slurmd $node: stopped"
        fi
    done
    if running_pid "$STATE/slurmctld.pid" slurmctld >/dev/null; then
        SLURM_CONF="$CONF" sinfo -N -o "%N %T %c %m %G"
        SLURM_CONF="$CONF" squeue
    fi
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 install|start|stop|status" >&2
        exit 2
        ;;
esac
