# Shared by the sbatch scripts in slurm/ (sourced, not run). Everything cluster-specific comes from the environment
# at submit time (sbatch exports it) or from sbatch flags; nothing here needs editing for a new cluster.
#
#   AC_REPO               repository checkout the job runs in (default: the directory sbatch was called from)
#   AC_VENV               virtualenv to activate (default: $AC_REPO/.venv; "none" to use the environment as is)
#   AC_MODULES            environment modules to load, space-separated (e.g. "cuda/12.4 nccl")
#   AC_ENV_SETUP          a file to source before running (conda activate, proxies, HF_HOME, ...)
#   AC_ACCELERATE_CONFIG  accelerate config for training (default per script)
#   AC_MASTER_ADDR        rendezvous host (default: the first node of the allocation, as Slurm addresses it)
#   AC_MASTER_PORT        rendezvous port (default: 20000 + job id % 20000, so jobs sharing a node do not collide)
#   AC_DRY_RUN=1          print what each node would run, run nothing
#
# Partition, account, time, nodes and GPUs per node are sbatch's own flags (or SBATCH_PARTITION, SBATCH_ACCOUNT,
# SBATCH_TIMELIMIT, ... in the environment); the scripts read the allocation, never a hard-coded count.

set -euo pipefail

ac_log() { echo "[aligncultura $(date +%H:%M:%S)] $*"; }
ac_die() {
    echo "[aligncultura] error: $*" >&2
    exit 2
}

# cd into the checkout, load modules, activate the venv; print the job's identity (tests read these lines).
ac_setup_env() {
    cd "$AC_REPO" || ac_die "AC_REPO=$AC_REPO does not exist"
    if [[ -n ${AC_MODULES:-} ]]; then
        command -v module >/dev/null || ac_die "AC_MODULES is set but the 'module' command is not available"
        # shellcheck disable=SC2086  # a space-separated module list
        module load $AC_MODULES
    fi
    if [[ -n ${AC_ENV_SETUP:-} ]]; then
        # shellcheck disable=SC1090
        source "$AC_ENV_SETUP"
    fi
    local venv="${AC_VENV:-$AC_REPO/.venv}"
    if [[ $venv != none ]]; then
        [[ -f $venv/bin/activate ]] || ac_die "no virtualenv at $venv (set AC_VENV, or AC_VENV=none)"
        # shellcheck disable=SC1091
        source "$venv/bin/activate"
    fi
    ac_log "job ${SLURM_JOB_ID:-?} (${SLURM_JOB_NAME:-?}) SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}" \
        "nodes=${SLURM_JOB_NODELIST:-?} array_task=${SLURM_ARRAY_TASK_ID:-none} python=$(command -v python)"
}

# GPUs per node from the allocation: SLURM_GPUS_ON_NODE, else CUDA_VISIBLE_DEVICES, else nvidia-smi.
ac_gpus_per_node() {
    if [[ -n ${SLURM_GPUS_ON_NODE:-} ]]; then
        echo "$SLURM_GPUS_ON_NODE"
    elif [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then
        local -a ids
        IFS=, read -ra ids <<<"$CUDA_VISIBLE_DEVICES"
        echo "${#ids[@]}"
    elif command -v nvidia-smi >/dev/null; then
        nvidia-smi -L | grep -c '^GPU'
    else
        echo 0
    fi
}

# Preemption: `#SBATCH --signal=B:USR1@N` delivers USR1 to this shell N seconds before the time limit (or a test
# sends it with `scancel --batch --signal=USR1`). We pass it on to the running step; the trainer saves a checkpoint
# and exits; then the job requeues itself and the next run resumes from that checkpoint.
AC_PREEMPTED=0
AC_STEP_PID=""
ac_on_preempt() {
    AC_PREEMPTED=1
    ac_log "preemption signal: asking the step to checkpoint and stop"
    [[ -z $AC_STEP_PID ]] || kill -USR1 "$AC_STEP_PID" 2>/dev/null || true
}
trap ac_on_preempt USR1

# Wait for background child $1 and return its exit code: a trapped signal interrupts `wait`, so wait again while
# the child is still alive.
ac_wait_child() {
    local rc
    while :; do
        rc=0
        wait "$1" || rc=$?
        kill -0 "$1" 2>/dev/null || return "$rc"
    done
}

# Run "$@" once per node through srun, wait for it, then requeue if the job was preempted, else return the step's
# exit code.
ac_run_per_node() {
    # The one task per node gets every CPU the job has there: the allocation's --cpus-per-gpu (srun inherits it and
    # refuses --cpus-per-task beside it), else --cpus-per-task, else all CPUs on the node.
    local cpus=()
    [[ -n ${SLURM_CPUS_PER_GPU:-} ]] || cpus=(--cpus-per-task="${SLURM_CPUS_PER_TASK:-$SLURM_CPUS_ON_NODE}")
    srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=1 "${cpus[@]}" "$@" &
    AC_STEP_PID=$!
    local rc=0
    ac_wait_child "$AC_STEP_PID" || rc=$?
    AC_STEP_PID=""
    if ((AC_PREEMPTED)); then
        ac_log "step ended (exit $rc) after preemption; requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    return "$rc"
}

# The per-node launcher srun runs: single-quoted, so $SLURM_NODEID and the GPU count are read on each node when
# the task starts, not expanded to node 0's values by the batch shell. The launcher ignores USR1 (a signal srun
# forwards to the task's process group would kill it); the task's shell hands USR1 to the launcher's children, the
# training processes, which torchrun starts in sessions of their own.
# shellcheck disable=SC2016  # expansions belong to the srun task
AC_NODE_LAUNCHER='
gpus=$(ac_gpus_per_node)
((gpus > 0)) || ac_die "node $(hostname): no GPUs in the allocation; submit with --gpus-per-node=N"
num_processes=$((gpus * SLURM_JOB_NUM_NODES))
launch=(accelerate launch --config_file "$AC_ACCELERATE_CONFIG"
    --num_machines "$SLURM_JOB_NUM_NODES" --machine_rank "$SLURM_NODEID" --num_processes "$num_processes"
    --main_process_ip "$AC_MASTER_ADDR" --main_process_port "$AC_MASTER_PORT" "$@")
echo "[aligncultura] node=$(hostname) SLURM_NODEID=$SLURM_NODEID machine_rank=$SLURM_NODEID" \
    "main_process_ip=$AC_MASTER_ADDR main_process_port=$AC_MASTER_PORT num_machines=$SLURM_JOB_NUM_NODES" \
    "gpus_on_node=$gpus num_processes=$num_processes CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"
echo "[aligncultura] node=$(hostname) command: ${launch[*]}"
[[ ${AC_DRY_RUN:-0} == 1 ]] && exit 0
trap "" USR1
"${launch[@]}" &
launcher=$!
trap "pkill -USR1 -P $launcher || true" USR1
ac_wait_child "$launcher"
'

# accelerate launch -m train.<module> --config <config> <overrides...> on every node of the allocation.
ac_launch_training() {
    local module=$1 config=$2
    shift 2
    [[ $module == sft || $module == dpo ]] || ac_die "first argument must be sft or dpo, got '$module'"
    [[ -f $config ]] || ac_die "training config $config not found (paths are relative to $AC_REPO)"
    [[ -f $AC_ACCELERATE_CONFIG ]] || ac_die "accelerate config $AC_ACCELERATE_CONFIG not found"
    local first_node node_addr
    first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    # Slurm's own address for the first node (NodeAddr, which defaults to its name); the name if scontrol won't say.
    node_addr=$(scontrol show node "$first_node" 2>/dev/null | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p') || node_addr=""
    AC_MASTER_ADDR=${AC_MASTER_ADDR:-${node_addr:-$first_node}}
    AC_MASTER_PORT=${AC_MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
    export AC_MASTER_ADDR AC_MASTER_PORT AC_ACCELERATE_CONFIG
    export -f ac_gpus_per_node ac_die ac_wait_child
    ac_run_per_node bash -c "$AC_NODE_LAUNCHER" "node-launcher" -m "train.$module" --config "$config" "$@"
    if [[ ${AC_DRY_RUN:-0} == 1 ]]; then ac_log "dry run: nothing was launched"; else ac_log "training finished"; fi
}

AC_REPO="${AC_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}"
export AC_REPO
