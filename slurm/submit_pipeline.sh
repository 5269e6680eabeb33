#!/usr/bin/env bash
# Submit the whole chain as SLURM jobs: data -> SFT -> DPO -> eval, each stage starting only when the previous one
# ended well (afterok; a failed stage cancels the rest). Run from the repository root.
#
# Qwen3-8B with the paper's settings (CULTURAX build, LoRA SFT then LoRA DPO on the SFT adapter, re-benchmark).
# Once: pip install -r requirements.txt -r requirements-gpu.txt (vLLM serves culturax.yaml's local judge/expander
# models inside the data job), and export OPENAI_API_KEY for the GPT-4.1 generator (the job inherits it).
#   slurm/submit_pipeline.sh --model qwen3-8b --partition gpu --account myproj --gpus-per-node 8
# DeepSeek-R1-Distill-Qwen-7B, same settings:
#   slurm/submit_pipeline.sh --model deepseek-r1-distill-qwen-7b --partition gpu --account myproj --gpus-per-node 8
# Two nodes for training (train_multinode.sbatch with a multi-node accelerate config):
#   slurm/submit_pipeline.sh --model qwen3-8b --nodes 2 --gpus-per-node 8 --partition gpu
# The tiny demo chain (random-weight models; also runs on slurm/local_cluster.sh's fake GPUs):
#   python -m train.tiny_models --out runs/tiny_models
#   slurm/submit_pipeline.sh --model tiny-qwen3 --data-config configs/data/demo_tiny.yaml \
#       --eval-config configs/eval/demo_tiny.yaml --gpus-per-node 2 --data-gpus 0 --eval-gpus 0
#
# Defaults per --model M: configs/data/culturax.yaml, configs/train/M/sft_lora.yaml, configs/train/M/dpo_lora.yaml,
# configs/eval/M.yaml. The output paths live in those configs (the DPO config names the SFT adapter it continues).
# The eval job scores the chain's own adapters: its config's adapter models are re-pointed at submission to the
# SFT and DPO output_dirs (YAML plus --sft-args/--dpo-args), written to <eval output_dir>/chain_eval_config.yaml.
# Training jobs ask for --cpus-per-gpu and --mem-per-gpu (default 8 and 32G, or AC_CPUS_PER_GPU / AC_MEM_PER_GPU).
# Venv, modules and the rest of the job environment: AC_* variables, see the table in slurm/README.md. Every stage's
# preflight runs before anything is submitted (slurm/preflight_chain.py; --no-check skips it).
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --model NAME            config folder: qwen3-8b | deepseek-r1-distill-qwen-7b | tiny-qwen3 | tiny-qwen2 (required)
  --data-config PATH      data pipeline YAML (default configs/data/culturax.yaml)
  --sft-config PATH       SFT YAML (default configs/train/MODEL/sft_lora.yaml)
  --dpo-config PATH       DPO YAML (default configs/train/MODEL/dpo_lora.yaml)
  --eval-config PATH      eval YAML (default configs/eval/MODEL.yaml)
  --stages LIST           comma-separated subset of data,sft,dpo,eval, in order (default: all four)
  --after JOBID           make the first submitted stage wait for this job (afterok)
  --nodes N               training nodes (default 1; N > 1 uses slurm/train_multinode.sbatch)
  --gpus-per-node N       GPUs per training node (default $GPUS_PER_NODE or 8)
  --data-gpus N           GPUs for the data job's vLLM servers (default 2: culturax.yaml serves two 7-8B models
                          on 127.0.0.1; 0 when every LLM role is a remote API or runs on CPU)
  --eval-gpus N           GPUs for the eval job (default 1)
  --accelerate-config P   accelerate config for training (default: the training script's)
  --cpus-per-gpu N        CPU cores per GPU of the training jobs (default $AC_CPUS_PER_GPU or 8)
  --mem-per-gpu M         host memory per GPU of the training jobs (default $AC_MEM_PER_GPU or 32G)
  --eval-as-is            evaluate the eval config's models as written (default: re-point its adapter models to
                          this chain's SFT and DPO outputs)
  --partition P, --account A, --qos Q     passed to every sbatch
  --time-data T, --time-train T, --time-eval T   time limits (default: the partition's)
  --experiment NAME       W&B group of every stage (WANDB_RUN_GROUP; default: MODEL)
  --data-args "...", --sft-args "...", --dpo-args "...", --eval-args "..."   CLI overrides for one stage
  --sbatch-args "..."     extra flags for every sbatch (e.g. "--exclusive --mem=0")
  --dry-run               print the sbatch commands instead of submitting (add --check to run the preflight too)
  --check                 preflight every stage (slurm/preflight_chain.py) even with --dry-run; it always runs
                          before a real submission, which it stops on a problem
  --no-check              submit without the preflight
EOF
}

die() {
    echo "submit_pipeline: error: $*" >&2
    exit 2
}

model="" data_config="configs/data/culturax.yaml" sft_config="" dpo_config="" eval_config=""
stages="data,sft,dpo,eval" after="" nodes=1 gpus="${GPUS_PER_NODE:-8}" data_gpus=2 eval_gpus=1
accelerate_config="" experiment="" dry_run=0 check="" eval_as_is=0
cpus_per_gpu="${AC_CPUS_PER_GPU:-8}" mem_per_gpu="${AC_MEM_PER_GPU:-32G}"
time_data="" time_train="" time_eval="" data_args="" sft_args="" dpo_args="" eval_args=""
common=()
while (($#)); do
    [[ $1 == -h || $1 == --help || $1 == --dry-run || $1 == --check || $1 == --no-check || $1 == --eval-as-is ]] ||
        (($# >= 2)) || die "$1 needs a value"
    case $1 in
        --model) model=$2 ;;
        --data-config) data_config=$2 ;;
        --sft-config) sft_config=$2 ;;
        --dpo-config) dpo_config=$2 ;;
        --eval-config) eval_config=$2 ;;
        --stages) stages=$2 ;;
        --after) after=$2 ;;
        --nodes) nodes=$2 ;;
        --gpus-per-node) gpus=$2 ;;
        --data-gpus) data_gpus=$2 ;;
        --eval-gpus) eval_gpus=$2 ;;
        --accelerate-config) accelerate_config=$2 ;;
        --cpus-per-gpu) cpus_per_gpu=$2 ;;
        --mem-per-gpu) mem_per_gpu=$2 ;;
        --partition | --account | --qos) common+=("$1=$2") ;;
        --time-data) time_data=$2 ;;
        --time-train) time_train=$2 ;;
        --time-eval) time_eval=$2 ;;
        --experiment) experiment=$2 ;;
        --data-args) data_args=$2 ;;
        --sft-args) sft_args=$2 ;;
        --dpo-args) dpo_args=$2 ;;
        --eval-args) eval_args=$2 ;;
        --sbatch-args) read -ra extra <<<"$2" && common+=("${extra[@]}") ;;
        --dry-run) dry_run=1 && shift && continue ;;
        --check) check=1 && shift && continue ;;
        --no-check) check=0 && shift && continue ;;
        --eval-as-is) eval_as_is=1 && shift && continue ;;
        -h | --help) usage && exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done

[[ -n $model ]] || die "--model is required (see --help)"
[[ -f slurm/common.sh ]] || die "run from the repository root (slurm/common.sh not found in $PWD)"
sft_config=${sft_config:-configs/train/$model/sft_lora.yaml}
dpo_config=${dpo_config:-configs/train/$model/dpo_lora.yaml}
eval_config=${eval_config:-configs/eval/$model.yaml}
export WANDB_RUN_GROUP="${experiment:-${WANDB_RUN_GROUP:-$model}}" AC_REPO="$PWD"
[[ -z $accelerate_config ]] || export AC_ACCELERATE_CONFIG="$accelerate_config"
train_script=slurm/train.sbatch
((nodes == 1)) || train_script=slurm/train_multinode.sbatch

# Per stage: GPUs per node, time limit, config, CLI overrides.
stage_settings() {
    case $1 in
        data) gpus_wanted=$data_gpus time=$time_data config=$data_config args=$data_args ;;
        sft) gpus_wanted=$gpus time=$time_train config=$sft_config args=$sft_args ;;
        dpo) gpus_wanted=$gpus time=$time_train config=$dpo_config args=$dpo_args ;;
        eval) gpus_wanted=$eval_gpus time=$time_eval config=$eval_config args=$eval_args ;;
        *) die "unknown stage '$1' in --stages (data, sft, dpo, eval)" ;;
    esac
}

# Check every stage before submitting any, so a typo does not leave half a chain in the queue.
IFS=, read -ra stage_list <<<"$stages"
for stage in "${stage_list[@]}"; do
    stage_settings "$stage"
    [[ -f $config ]] || die "$stage config $config not found"
done

# The eval config with its adapter models pointing at this chain's SFT and DPO outputs (a dry run only prints them).
chain_eval_config() {
    local python=${AC_VENV:-$PWD/.venv}/bin/python
    [[ ${AC_VENV:-} != none && -x $python ]] || python=$(command -v python3 || command -v python)
    local cmd=("$python" slurm/checkpoint_eval_config.py --config "$eval_config" --chain "$sft_config" "$dpo_config"
        --sft-args "$sft_args" --dpo-args "$dpo_args")
    ((dry_run)) && cmd+=(--dry-run)
    "${cmd[@]}" || die "could not point the eval config $eval_config at the chain's adapters (or pass --eval-as-is)"
}

# A real submission points the eval config at this chain's adapters now, so that the preflight checks what will run.
chain_config=""
if [[ " ${stage_list[*]} " == *" eval "* ]] && ((!eval_as_is && !dry_run)); then
    stage_settings eval
    chain_config=$(chain_eval_config)
fi

# Preflight of every stage (keys, endpoints, inputs, models, output folders), what the chain provides counted as
# provided: the data job's local vLLM servers, and each stage's inputs written by the stages before it.
if ((${check:-$((!dry_run))})); then
    chain=()
    [[ -z $after ]] || chain=(--after-job "$after")
    for stage in "${stage_list[@]}"; do
        stage_settings "$stage"
        [[ $stage != eval || -z $chain_config ]] || config=$chain_config
        read -ra overrides <<<"$args"
        chain+=(--stage "$stage" "$config" "${overrides[@]}")
    done
    venv="${AC_VENV:-$PWD/.venv}"
    python_bin=python
    [[ $venv == none || ! -x $venv/bin/python ]] || python_bin="$venv/bin/python"
    if ! PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$python_bin" slurm/preflight_chain.py "${chain[@]}" >&2; then
        ((dry_run)) || die "preflight failed (the lines marked ✗ above); nothing submitted (--no-check skips it)"
        echo "submit_pipeline: preflight failed (✗ above); a real submission would stop here" >&2
    fi
fi
mkdir -p runs/slurm

previous=$after
submit() { # submit STAGE SCRIPT ARGS... with the stage's $flags; the caller's flags (--sbatch-args, ...) win
    local stage=$1
    shift
    local cmd=(sbatch --parsable "${flags[@]}" "${common[@]}")
    [[ -z $previous ]] || cmd+=("--dependency=afterok:$previous" --kill-on-invalid-dep=yes)
    cmd+=("$@")
    if ((dry_run)); then
        echo "${cmd[*]}"
        previous="<$stage>"
        return
    fi
    local job
    job=$("${cmd[@]}")
    job=${job%%;*}
    echo "$stage: job $job${previous:+ (after $previous)}"
    previous=$job
}

for stage in "${stage_list[@]}"; do
    stage_settings "$stage"
    flags=(--job-name="ac-$stage")
    ((gpus_wanted == 0)) || flags+=(--gpus-per-node="$gpus_wanted")
    [[ -z $time ]] || flags+=(--time="$time")
    read -ra overrides <<<"$args"
    case $stage in
        data) submit data slurm/data.sbatch "$config" "${overrides[@]}" ;;
        sft | dpo)
            flags+=(--nodes="$nodes" --cpus-per-gpu="$cpus_per_gpu" --mem-per-gpu="$mem_per_gpu")
            submit "$stage" "$train_script" "$stage" "$config" "${overrides[@]}"
            ;;
        eval)
            if [[ -n $chain_config ]]; then
                config=$chain_config
            elif ((!eval_as_is)); then # a dry run prints the re-pointed models without writing the config
                config=$(chain_eval_config)
                ((dry_run)) && echo "eval config: $config" && config=${config%% *}
            fi
            submit eval slurm/eval_array.sbatch "$config" -- "${overrides[@]}" # one job: the config's models
            ;;
    esac
done
((dry_run)) || echo "logs: runs/slurm/  queue: squeue -u ${USER:-$(id -un)}  (W&B group: $WANDB_RUN_GROUP)"
