"""slurm/ on a real SLURM cluster on localhost (slurm/local_cluster.sh): the real sbatch scripts with tiny recipes.

- the per-node launcher reads each node's rank and GPU count when the srun task starts (not the batch shell's values);
- submit_pipeline.sh chains data -> SFT -> DPO -> eval with afterok dependencies (checked in scontrol), then the
  chain runs end to end (the data job serving its config's local OpenAI endpoint, as it starts vLLM on a cluster);
  its SFT job is the single-node training job (2 processes on the node's 2 fake GPUs);
- the multi-node script on one node (-N1): what its srun task saw (machine_rank, master address, num_processes),
  and for real on two SLURM nodes (local_cluster.sh runs one slurmd per node name): ranks 0 and 1 train together;
- an eval job array over the SFT checkpoints;
- preemption: USR1 to a running training job -> checkpoint -> requeue -> resume -> the configured step count with
  one continuous log history, SLURM_RESTART_COUNT=1, the same W&B run.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests._slurm_fixtures import LocalCluster
from tests._train_fixtures import write_training_data
from tests.conftest import REPO_ROOT

CPU_ACCELERATE = "accelerate_configs/cpu_2proc.yaml"
TRAIN_RESOURCES = ["--cpus-per-gpu=1", "--mem-per-gpu=2G"]  # the training scripts' 8 cores / 32G per GPU: 2-core nodes
SEED_PROMPTS = REPO_ROOT / "data_pipeline" / "seeds" / "prompts.jsonl"


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster()
    yield local
    local.close()


@pytest.fixture(scope="module")
def job_env(tmp_path_factory) -> dict:
    """What every submitted job sees (sbatch exports the environment): 2 processes on CPU, offline W&B in tmp."""
    wandb_dir = tmp_path_factory.mktemp("wandb")
    return {
        "AC_ACCELERATE_CONFIG": CPU_ACCELERATE,
        "AC_VENV": str(REPO_ROOT / ".venv"),
        "WANDB_DIR": str(wandb_dir),
        # the local nodes have 2 cores: submit_pipeline.sh's training jobs ask for 1 core and 2G per GPU, not 8 / 32G
        "AC_CPUS_PER_GPU": "1",
        "AC_MEM_PER_GPU": "2G",
    }


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def train_config(recipe: str, out: Path, tiny_models, **overrides) -> Path:
    """The repo's tiny-qwen3 recipe with this test's model, data and output paths."""
    config = yaml.safe_load((REPO_ROOT / "configs" / "train" / "tiny-qwen3" / f"{recipe}.yaml").read_text())
    config.update(model_name_or_path=str(tiny_models["tiny-qwen3"]), **overrides)
    return write_yaml(out / f"{recipe}.yaml", config)


def node_addr(nodelist: str) -> str:
    """How Slurm addresses the first node of an allocation (its NodeAddr): the rendezvous host."""
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True).stdout
    node = subprocess.run(["scontrol", "show", "node", "-o", hosts.split()[0]], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", node))["NodeAddr"]


def log_of(job_dir: Path, job_id: str) -> str:
    return (job_dir / f"{job_id}.out").read_text(errors="replace")


# --- the per-node launcher (no cluster needed) ------------------------------------------------------------------


def test_node_launcher_reads_rank_and_gpus_on_each_node():
    """The text srun runs is evaluated on the node: node 3 of 4 with 8 GPUs renders rank 3 and 32 processes."""
    script = 'source slurm/common.sh; export -f ac_gpus_per_node ac_die; bash -c "$AC_NODE_LAUNCHER" node -m train.sft'
    env = {
        **os.environ,
        "SLURM_NODEID": "3",
        "SLURM_JOB_NUM_NODES": "4",
        "SLURM_GPUS_ON_NODE": "8",
        "AC_MASTER_ADDR": "gpu-node-017",
        "AC_MASTER_PORT": "23456",
        "AC_ACCELERATE_CONFIG": "accelerate_configs/multi_node_multi_gpu.yaml",
        "AC_DRY_RUN": "1",
    }
    proc = subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "machine_rank=3 " in proc.stdout and "num_processes=32 " in proc.stdout, proc.stdout
    assert (
        "--num_machines 4 --machine_rank 3 --num_processes 32 --main_process_ip gpu-node-017 --main_process_port 23456"
        " -m train.sft" in proc.stdout
    )
    env.pop("SLURM_GPUS_ON_NODE")
    env["CUDA_VISIBLE_DEVICES"] = "0,1,2"  # clusters that set only CUDA_VISIBLE_DEVICES
    proc = subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert "gpus_on_node=3 num_processes=12 " in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", ["train.sbatch", "train_multinode.sbatch"])
def test_training_scripts_request_cpus_and_memory_per_gpu(script):
    """Without these, clusters defaulting to one core per task put 8 ranks on one core (and per-CPU memory)."""
    lines = (REPO_ROOT / "slurm" / script).read_text().splitlines()
    directives = [line.split()[1] for line in lines if line.startswith("#SBATCH ")]
    assert "--cpus-per-gpu=8" in directives and "--mem-per-gpu=32G" in directives


def test_submit_pipeline_rejects_bad_input(tmp_path):
    run = lambda *a: subprocess.run(  # noqa: E731
        ["slurm/submit_pipeline.sh", *a], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    proc = run("--model", "no-such-model", "--dry-run")
    assert proc.returncode == 2 and "sft config configs/train/no-such-model/sft_lora.yaml not found" in proc.stderr
    config = write_yaml(tmp_path / "c.yaml", {})
    proc = run("--model", "x", "--stages", "data,train", "--data-config", str(config), "--dry-run")
    assert proc.returncode == 2 and "unknown stage 'train'" in proc.stderr
    assert run("--model").returncode == 2


@pytest.mark.parametrize("model", ["qwen3-8b", "deepseek-r1-distill-qwen-7b"])
def test_documented_real_model_chain(model):
    """The one documented command per real model: its four jobs, and configs whose paths hand over stage to stage."""
    usage = ["slurm/submit_pipeline.sh", "--model", model, "--partition", "gpu", "--account", "proj"]
    assert " ".join(usage[:3]) in (REPO_ROOT / "slurm" / "submit_pipeline.sh").read_text()
    proc = subprocess.run([*usage, "--dry-run"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("sbatch ")]
    assert [line.split(".sbatch")[0].split()[-1] for line in lines] == [
        "slurm/data",
        "slurm/train",
        "slurm/train",
        "slurm/eval_array",
    ]
    assert all("--partition=gpu --account=proj" in line for line in lines)
    assert lines[1].endswith(f"slurm/train.sbatch sft configs/train/{model}/sft_lora.yaml")
    assert "--dependency=afterok:<sft>" in lines[2] and lines[2].endswith(f"dpo configs/train/{model}/dpo_lora.yaml")
    assert "--gpus-per-node=8" in lines[1] and "--dependency=afterok:<dpo>" in lines[3]
    assert all("--cpus-per-gpu=8 --mem-per-gpu=32G" in line for line in lines[1:3])  # training jobs' resources
    assert lines[3].endswith("slurm/eval_array.sbatch runs/" + f"{model}/eval/chain_eval_config.yaml --")
    two_nodes = subprocess.run([*usage, "--nodes", "2", "--dry-run"], cwd=REPO_ROOT, capture_output=True, text=True)
    sft_line = two_nodes.stdout.splitlines()[1]
    assert "--nodes=2 " in sft_line and "slurm/train_multinode.sbatch sft" in sft_line

    load = lambda path: yaml.safe_load((REPO_ROOT / path).read_text())  # noqa: E731
    data, sft = load("configs/data/culturax.yaml"), load(f"configs/train/{model}/sft_lora.yaml")
    dpo, evaluation = load(f"configs/train/{model}/dpo_lora.yaml"), load(f"configs/eval/{model}.yaml")
    built = data["output_dir"]
    assert (sft["dataset_name"], dpo["dataset_name"]) == (f"{built}/sft", f"{built}/dpo")
    assert dpo["sft_adapter"] == sft["output_dir"]
    assert evaluation["culturax_dataset"] == f"{built}/dataset"
    adapters = [m.get("adapter") for m in evaluation["models"]]
    assert adapters == [None, sft["output_dir"], dpo["output_dir"]], f"configs/eval/{model}.yaml adapters {adapters}"


# --- on the local cluster -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(cluster, job_env, tiny_models, tmp_path_factory):
    """submit_pipeline.sh's chain behind a held gate job: dependencies read while pending, then run to the end."""
    root = tmp_path_factory.mktemp("chain")
    tiny = str(tiny_models["tiny-qwen3"])
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(SEED_PROMPTS.read_text().splitlines(keepends=True)[:40]))
    # The generator talks to an OpenAI-compatible server on 127.0.0.1 that the data job starts itself: real vLLM (its
    # CPU build here) through slurm/serve_local_llms.py. The judge stays in process: a random-weight model's score
    # digits are not among the top 20 tokens an API returns, so over the API every judgement would be unparsable.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    served = {"backend": "openai", "model": tiny, "base_url": f"http://127.0.0.1:{port}/v1", "max_concurrency": 4}
    served["chat_template_kwargs"] = {"enable_thinking": False}
    judge = {"backend": "transformers", "model": tiny, "batch_size": 16, "dtype": "float32"}
    judge["chat_template_kwargs"] = {"enable_thinking": False}
    vllm = {"AC_VLLM": str(Path(sys.executable).with_name("vllm"))}
    vllm["AC_VLLM_ARGS"] = "--dtype float32 --max-model-len 2048"  # CPU: float32 kernels
    data = root / "data"
    data_config = write_yaml(
        root / "data.yaml",
        {
            "output_dir": str(data),
            "stages": ["import", "dedup", "split", "generate", "judge", "views"],
            "sources": [{"format": "jsonl", "path": str(prompts)}],
            "llm": {"generator": served, "judge": judge},
            "generate": {"k": 2, "max_new_tokens": 8},
            "judge": {
                "mode": "logprob",
                "max_iterations": 1,
                "critique_max_new_tokens": 4,
                "helpful_threshold": 1.0,
                "harmless_threshold": 1.0,
                "honest_threshold": 1.0,
                "min_margin": 0.0,
            },
        },
    )
    sft_out, dpo_out = root / "sft_lora", root / "dpo_lora"
    sft = train_config("sft_lora", root, tiny_models, dataset_name=str(data / "sft"), output_dir=str(sft_out))
    dpo = train_config(
        "dpo_lora", root, tiny_models, dataset_name=str(data / "dpo"), output_dir=str(dpo_out), sft_adapter=str(sft_out)
    )
    for path in (sft, dpo):
        write_yaml(path, {**yaml.safe_load(path.read_text()), "report_to": ["none"]})
    eval_config = yaml.safe_load((REPO_ROOT / "configs" / "eval" / "demo_tiny.yaml").read_text())
    eval_config.update(
        output_dir=str(root / "eval"),
        cache_dir=str(root / "llm_cache"),
        report_to="none",
        culturax_dataset=str(data / "dataset"),
        heldout_data=str(data),
        max_new_tokens=8,
        max_prompts_per_set=2,
        bootstrap_resamples=20,
    )  # models stay demo_tiny.yaml's (runs/demo-tiny/sft, ...): submit_pipeline.sh points them at this chain's adapters
    eval_config["judges"]["default"]["model"] = tiny
    eval_yaml = write_yaml(root / "eval.yaml", eval_config)

    gate = cluster.sbatch(["--hold", "--job-name=gate", f"--output={root}/gate.out", "--wrap", "true"])
    proc = cluster.run(
        [
            "slurm/submit_pipeline.sh",
            "--model",
            "tiny-qwen3",
            "--data-config",
            str(data_config),
            "--sft-config",
            str(sft),
            "--dpo-config",
            str(dpo),
            "--eval-config",
            str(eval_yaml),
            "--after",
            gate,
            "--gpus-per-node",
            "2",
            "--data-gpus",
            "0",
            "--eval-gpus",
            "0",
            "--experiment",
            "slurm-test",
            "--sbatch-args",
            f"--output={root}/%j.out",
        ],  # fmt: skip
        env={**job_env, **vllm, "AC_SERVE_LOG_DIR": str(root)},
    )
    assert proc.returncode == 0, proc.stderr + cluster.nodes_report()
    jobs = dict(line.split(": job ")[0:2] for line in proc.stdout.splitlines() if ": job " in line)
    jobs = {stage: value.split()[0] for stage, value in jobs.items()}
    cluster.jobs.extend(jobs.values())
    pending = {stage: cluster.job(job) for stage, job in jobs.items()}
    cluster.run(["scontrol", "release", gate])
    final = {stage: cluster.wait(job, timeout=900 if stage == "data" else 420) for stage, job in jobs.items()}
    return {"root": root, "jobs": jobs, "pending": pending, "final": final, "gate": gate, "sft_out": sft_out} | {
        "dpo_out": dpo_out,
        "base_model": tiny,
        "port": port,
    }


@pytest.mark.slow
def test_pipeline_dependencies(chain):
    jobs, pending = chain["jobs"], chain["pending"]
    assert list(jobs) == ["data", "sft", "dpo", "eval"]
    previous = chain["gate"]
    for stage in jobs:
        assert pending[stage]["JobState"] == "PENDING", pending[stage]
        assert pending[stage]["Dependency"].startswith(f"afterok:{previous}"), (stage, pending[stage]["Dependency"])
        previous = jobs[stage]
    assert pending["sft"]["TresPerNode"] == "gres:gpu:2"
    for stage in ("sft", "dpo"):  # AC_CPUS_PER_GPU=1 / AC_MEM_PER_GPU=2G reached the allocation (2048 MB per GPU)
        assert (pending[stage]["CpusPerTres"], pending[stage]["MemPerTres"]) == ("gres:gpu:1", "gres:gpu:2048")


@pytest.mark.slow
def test_pipeline_runs_end_to_end(chain):
    root, final = chain["root"], chain["final"]
    for stage, record in final.items():
        assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), (stage, log_of(root, record["JobId"]))
    manifest = json.loads((root / "data" / "manifest.json").read_text())
    assert manifest["leakage"]["cross_split_pairs"] == 0
    # the data job served the generator's endpoint itself with vLLM, and the generator's calls went to it
    port, data_log = chain["port"], log_of(root, chain["jobs"]["data"])
    assert f"port {port} is up" in data_log, data_log
    server_log = (root / f"{chain['jobs']['data']}-vllm-{port}.log").read_text()
    assert f"{Path(sys.executable).with_name('vllm')} serve {chain['base_model']}" in data_log, data_log
    assert "POST /v1/chat/completions" in server_log, server_log[-2000:]
    calls = json.loads((root / "data" / "stats.json").read_text())["llm_calls"]
    assert calls["generator"]["new"] > 0 and calls["generator"]["failures"] == 0, calls
    assert (root / "dpo_lora" / "adapter_model.safetensors").is_file()
    results = json.loads((root / "eval" / "results.json").read_text())
    # the eval job scored the chain's own adapters on the chain's base model, not the config's runs/demo-tiny paths
    models = [(m["name"], m["model"], m["adapter"]) for m in results["models"]]
    base, sft, dpo = chain["base_model"], str(chain["sft_out"]), str(chain["dpo_out"])
    assert models == [("tiny-qwen3", base, None), ("tiny-qwen3+sft", base, sft), ("tiny-qwen3+sft+dpo", base, dpo)]
    assert [m["train_runs"] for m in results["models"]] == [[], [sft], [sft, dpo]]


@pytest.mark.slow
def test_single_node_training_job(chain):
    """The chain's SFT job is train.sbatch: 2 processes from the 2 allocated GPUs, to the recipe's max_steps."""
    sft_job = chain["jobs"]["sft"]
    log = log_of(chain["root"], sft_job)
    master = node_addr(chain["final"]["sft"]["NodeList"])
    assert f"SLURM_NODEID=0 machine_rank=0 main_process_ip={master} " in log
    assert "gpus_on_node=2 num_processes=2 CUDA_VISIBLE_DEVICES=0,1" in log
    out = chain["sft_out"]
    recipe = yaml.safe_load((REPO_ROOT / "configs" / "train" / "tiny-qwen3" / "sft_lora.yaml").read_text())
    max_steps = recipe["max_steps"]
    state = json.loads((out / f"checkpoint-{max_steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == max_steps
    assert json.loads((out / "train_results.json").read_text())["world_size"] == 2
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_multinode_script_on_one_node(cluster, job_env, tiny_models, tmp_path):
    """-N1 with one GPU: what the srun task saw (printed by the script) and the accelerate command it built."""
    config = train_config("sft_lora", tmp_path, tiny_models, dataset_name=str(tmp_path / "none"))
    job = cluster.sbatch(
        [
            "-N1",
            "--gpus-per-node=1",
            *TRAIN_RESOURCES,
            f"--output={tmp_path}/%j.out",
            "slurm/train_multinode.sbatch",
            "sft",
            str(config),
        ],
        env={**job_env, "AC_DRY_RUN": "1", "AC_ACCELERATE_CONFIG": "accelerate_configs/multi_node_multi_gpu.yaml"},
    )
    record = cluster.wait(job, timeout=60)
    log = log_of(tmp_path, job)
    assert record["JobState"] == "COMPLETED", log
    master = node_addr(record["NodeList"])
    task_lines = [line for line in log.splitlines() if " SLURM_NODEID=" in line]
    assert len(task_lines) == 1, log  # one srun task per node
    port = 20000 + int(job) % 20000
    assert (
        f"SLURM_NODEID=0 machine_rank=0 main_process_ip={master} main_process_port={port} num_machines=1 "
        "gpus_on_node=1 num_processes=1 CUDA_VISIBLE_DEVICES=0" in task_lines[0]
    )
    assert (
        "accelerate launch --config_file accelerate_configs/multi_node_multi_gpu.yaml --num_machines 1 "
        f"--machine_rank 0 --num_processes 1 --main_process_ip {master} --main_process_port {port} "
        f"-m train.sft --config {config}" in log
    )


@pytest.mark.slow
def test_multinode_training_on_two_nodes(cluster, job_env, tiny_models, tmp_path):
    """-N2, one GPU each: one srun task per node, ranks 0 and 1 (a static rendezvous hangs if both claim rank 0)."""
    if len(cluster.nodes) < 2:
        pytest.skip("the running local cluster has one node (LOCAL_SLURM_NODES=1)")
    data = write_training_data(tmp_path / "data")
    out = tmp_path / "sft_lora"
    config = train_config(
        "sft_lora", tmp_path, tiny_models, dataset_name=str(data / "sft"), output_dir=str(out), report_to=["none"]
    )
    job = cluster.sbatch(
        [
            "-N2",
            "--gpus-per-node=1",
            *TRAIN_RESOURCES,
            f"--output={tmp_path}/%j.out",
            "slurm/train_multinode.sbatch",
            "sft",
            str(config),
        ],
        env=job_env,  # cpu_2proc.yaml: static rendezvous, so machine_rank decides each node's ranks
    )
    record = cluster.wait(job, timeout=180)
    log = log_of(tmp_path, job)
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), log
    master, port = node_addr(record["NodeList"]), 20000 + int(job) % 20000
    for rank in (0, 1):
        assert (
            f"SLURM_NODEID={rank} machine_rank={rank} main_process_ip={master} main_process_port={port} num_machines=2 "
            "gpus_on_node=1 num_processes=2 CUDA_VISIBLE_DEVICES=0" in log
        ), log
    assert json.loads((out / "train_results.json").read_text())["world_size"] == 2
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_eval_array_over_checkpoints(cluster, chain, job_env):
    root, sft_out = chain["root"], chain["sft_out"]
    checkpoints = sorted(sft_out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) >= 2
    eval_yaml = root / "eval.yaml"
    out = root / "eval_array"
    config = {**yaml.safe_load(eval_yaml.read_text()), "output_dir": str(out)}
    array_config = write_yaml(root / "eval_array.yaml", config)
    job = cluster.sbatch(
        [
            f"--array=0-{len(checkpoints) - 1}",
            f"--output={root}/%A_%a.out",
            "slurm/eval_array.sbatch",
            str(array_config),
            f"{sft_out}/checkpoint-*",  # quoted glob: expanded by each task
        ],
        env=job_env,
    )
    for task in range(len(checkpoints)):
        record = cluster.wait(f"{job}_{task}", timeout=240)
        log = (root / f"{job}_{task}.out").read_text()
        assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), log
    for task, checkpoint in enumerate(checkpoints):
        task_dir = out / "checkpoints" / f"sft_lora-{checkpoint.name}"
        task_config = yaml.safe_load((task_dir / "eval_config.yaml").read_text())
        assert task_config["models"] == [
            {"name": f"sft_lora-{checkpoint.name}", "model": chain["base_model"], "adapter": str(checkpoint)}
        ]
        assert (task_dir / "results.json").is_file()
        assert f"array task {task} of {len(checkpoints)}: {checkpoint}" in (root / f"{job}_{task}.out").read_text()


def wait_for_log(cluster, job: str, path: Path, done, timeout: float) -> str:
    """Poll a running job's log until ``done(text)``; fail with the log if the job ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if done(text):
            return text
        if cluster.job(job).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            break
        time.sleep(0.3)
    pytest.fail(f"job {job}: condition not met within {timeout:.0f} s; log:\n{text[-4000:]}")


def wandb_service(job: str, restart: int) -> psutil.Process:
    """The W&B service (wandb-core) the job's rank 0 started in its ``restart``-th run."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "wandb-core":
            continue
        try:
            env = proc.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if env.get("SLURM_JOB_ID") == job and env.get("SLURM_RESTART_COUNT", "0") == str(restart):
            return proc
    pytest.fail(f"no wandb-core process of job {job} run {restart}")


@pytest.mark.slow
def test_preempted_training_with_wandb_saves_at_the_signal_and_resumes(cluster, job_env, tiny_models, tmp_path):
    """One job, three interruptions with report_to: [wandb] (offline), each resumed from the signalled step:
    1. USR1 to the batch shell (`--signal=B:USR1@N` ahead of the time limit), forwarded to the trainers;
    2. `scontrol requeue`: SIGTERM to every process of the step, the W&B service included;
    3. the W&B service killed first (its next log call fails), then `scontrol requeue`.
    Periodic checkpoints are off (save_steps 1000), so every resume must come from the checkpoint the signal wrote.
    The fourth run finishes: 30 steps, one continuous log history, one W&B run id across the four runs."""
    data = write_training_data(tmp_path / "data")
    out, max_steps = tmp_path / "sft_lora", 30
    config = train_config(
        "sft_lora",
        tmp_path,
        tiny_models,
        dataset_name=str(data / "sft"),
        output_dir=str(out),
        max_steps=max_steps,
        save_steps=1000,
        logging_steps=1,
        report_to=["wandb"],
        wandb_group="slurm-requeue",
    )
    job = cluster.sbatch(
        [
            "--gpus-per-node=2",
            *TRAIN_RESOURCES,
            f"--output={tmp_path}/%j.out",
            "slurm/train.sbatch",
            "sft",
            str(config),
        ],
        env=job_env,
    )
    log = tmp_path / f"{job}.out"

    def stepping(run: int):
        """Run ``run`` (its SLURM_RESTART_COUNT) has logged two optimizer steps of its own."""
        marker = f"SLURM_RESTART_COUNT={run} "
        return lambda text: marker in text and text.split(marker)[-1].count("'loss'") >= 2

    wait_for_log(cluster, job, log, stepping(0), timeout=150)
    cluster.run(["scancel", "--batch", "--signal=USR1", job])
    wait_for_log(cluster, job, log, stepping(1), timeout=150)
    cluster.run(["scontrol", "requeue", job])
    wait_for_log(cluster, job, log, stepping(2), timeout=150)
    wandb_service(job, 2).terminate()
    wait_for_log(cluster, job, log, lambda text: "W&B on_log failed at step" in text, timeout=60)
    cluster.run(["scontrol", "requeue", job])
    record = cluster.wait(job, timeout=300)
    text = log.read_text(errors="replace")
    assert (record["JobState"], record["ExitCode"], record["Restarts"]) == ("COMPLETED", "0:0", "3"), text[-4000:]
    for run in range(4):
        assert f"SLURM_RESTART_COUNT={run}" in text

    quoted = re.compile(r"preempted:|resuming from |W&B run id |W&B on_log failed")
    printed = [line for line in text.splitlines() if quoted.match(line)]
    print("\n".join(printed))  # the closing note quotes these lines
    stops = re.findall(r"preempted: (SIG\w+) at step (\d+), checkpoint-(\d+) saved", text)
    assert [signal for signal, _, _ in stops] == ["SIGUSR1", "SIGTERM", "SIGTERM"], text[-4000:]
    assert all(step == saved for _, step, saved in stops)
    resumes = re.findall(r"resuming from (\S+)/checkpoint-(\d+) \(step (\d+)\)", text)
    assert [(path, int(step)) for path, step, _ in resumes] == [(str(out), int(step)) for _, step, _ in stops]
    assert 2 <= int(stops[0][1]) < int(stops[1][1]) < int(stops[2][1]) < max_steps

    state = json.loads((out / f"checkpoint-{max_steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == max_steps == json.loads((out / "train_results.json").read_text())["global_step"]
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == list(range(1, max_steps + 1))  # one continuous history: no gap, no repeated step
    run_id = (out / "wandb_run_id").read_text().strip()
    ids = re.findall(r"W&B run id (\w+) \((new|resumed)\)", text)
    assert ids == [(run_id, "new")] + [(run_id, "resumed")] * 3
    runs = list(Path(job_env["WANDB_DIR"]).glob(f"wandb/offline-run-*-{run_id}"))
    assert len(runs) == 4, runs  # every run, the requeued ones too, continued the same W&B run


def test_shell_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck missing in CI (.ci/run installs it)")
        pytest.skip("shellcheck not installed")
    scripts = sorted(str(p) for p in (REPO_ROOT / "slurm").iterdir() if p.suffix in (".sh", ".sbatch"))
    scripts.append(str(REPO_ROOT / ".ci" / "run"))
    proc = subprocess.run(["shellcheck", "-s", "bash", *scripts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
