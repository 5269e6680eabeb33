"""End-to-end runs of the real entry points on tiny models: one process, 2 processes (DDP over gloo), DeepSpeed
ZeRO-2 / ZeRO-3, QLoRA; preemption by signal, resume in the same output_dir, W&B offline run files, merge."""

import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests._train_fixtures import run_module, write_training_data
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
TINY = REPO_ROOT / "configs" / "train"
API_KEY_MARKER = "wandb-key-marker-0123456789abcdef0123456789abcdef"
TORCH_EXTENSIONS = Path.home() / ".cache" / "aligncultura" / "torch_extensions"  # DeepSpeed's op build, shared


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_training_data(tmp_path_factory.mktemp("train_data"))


def train_cmd(stage: str, model: str, tiny_models, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-m",
        f"train.{stage}",
        *["--config", str(TINY / model / f"{stage}_lora.yaml")],
        *["--model_name_or_path", str(tiny_models[model])],
        *["--dataset_name", str(data_dir / stage), "--output_dir", str(out)],
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as probe:  # a free rendezvous port: tests may run beside other jobs on this machine
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(accelerate_config: Path, module_args: list[str], env: dict | None = None, timeout: int = 300):
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(accelerate_config), "--main_process_port", "0"]
    return run_module(
        [*cmd, *module_args], env={"TORCH_EXTENSIONS_DIR": str(TORCH_EXTENSIONS), **(env or {})}, timeout=timeout
    )


def cpu_variant(name: str, tmp_path: Path, num_processes: int = 2) -> Path:
    """A shipped accelerate config, changed only where CPU needs it (2 processes, no bf16)."""
    config = yaml.safe_load((REPO_ROOT / "accelerate_configs" / f"{name}.yaml").read_text())
    config.update(num_processes=num_processes, mixed_precision="no")
    path = tmp_path / f"{name}_cpu{num_processes}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def logged_steps(output: str) -> list[dict]:
    return [eval(m) for m in re.findall(r"\{'loss': [^}]*\}", output)]  # the Trainer's printed log dicts


def assert_adapter(out: Path, changed_from: Path | None = None) -> dict:
    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all(torch.isfinite(w).all() for w in weights.values())
    assert any(k.endswith("lora_B.weight") and w.abs().sum() > 0 for k, w in weights.items())  # trained, not init
    assert not (out / "ref").exists()  # DPO's frozen reference copy is not part of the result
    if changed_from is not None:
        before = load_file(changed_from / "adapter_model.safetensors")
        assert set(before) == set(weights)
        assert any(not torch.equal(before[k], weights[k]) for k in weights)
        # DPO continued these weights (lr 5e-6, a few steps): a re-initialised adapter would differ by ~0.1.
        assert max((before[k] - weights[k]).abs().max().item() for k in weights) < 1e-3
    results = json.loads((out / "train_results.json").read_text())
    for key in ["train_runtime", "train_tokens", "train_tokens_per_second", "gpu_hours", "world_size", "device"]:
        assert key in results
    assert results["train_tokens"] > 0 and results["gpu_hours"] == 0 and results["device"] == "cpu"
    assert results["quantization"] is None or "qlora" in out.name
    return results


# ------------------------------------------------------------------------------------------------- W&B run files
def wandb_records(run_file: Path):
    """Records of an offline run file (LevelDB log format: 7-byte header, 32 KiB blocks, chunked records)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = run_file.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (length == 0 and kind == 0):
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def wandb_runs(wandb_dir: Path) -> list:
    runs = []
    for run_file in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb")):
        runs += [r.run for r in wandb_records(run_file) if r.WhichOneof("record_type") == "run"]
    return runs


def run_and_signal(cmd: list[str], env: dict, target, signum=signal.SIGUSR1) -> tuple[int, str]:
    """Start a training command, wait until it logs a step, send ``signum`` to ``target(proc)`` (a process whose
    ``send_signal`` is used), and return (exit code, output)."""
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout:  # wait until training is really stepping, then signal as SLURM would
        lines.append(line)
        if "'loss'" in line:
            target(proc).send_signal(signum)
            break
    lines += proc.stdout.readlines()
    return proc.wait(timeout=120), "".join(lines)


def rank_process(launcher: subprocess.Popen, rank: int):
    """The worker process of ``rank`` under an accelerate launcher."""
    import psutil

    workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "train." in " ".join(p.cmdline())]
    return next(p for p in workers if p.environ().get("RANK") == str(rank))


# ---------------------------------------------------------------------------------------------------- the tests
def test_sft_preempted_by_signal_resumes_same_run_and_wandb(tiny_models, data_dir, tmp_path):
    out, wandb_dir = tmp_path / "sft", tmp_path / "wandb"
    env = {
        "WANDB_DIR": str(wandb_dir),
        "WANDB_API_KEY": API_KEY_MARKER,
        "WANDB_RUN_GROUP": "demo-test",
        "PYTHONPATH": str(REPO_ROOT),
    }
    wandb_dir.mkdir()
    cmd = train_cmd("sft", "tiny-qwen3", tiny_models, data_dir, out, "--max_steps", "2000", "--save_steps", "1000")
    returncode, output = run_and_signal([sys.executable, *cmd], env, lambda proc: proc)
    assert returncode == 0, output[-4000:]
    # the recipe's global batch of 8 on one process: gradient accumulation derived at launch, and logged
    assert "batch: global_batch=8 = per_device 4 x processes 1 x grad_accum 2" in output
    stopped = int(re.search(r"preempted: .* at step (\d+), checkpoint-\d+ saved", output).group(1))
    assert 1 <= stopped < 2000 and (out / f"checkpoint-{stopped}" / "trainer_state.json").exists()
    assert not (out / "train_results.json").exists()  # not finished: only the checkpoint

    resumed = run_module([*cmd[:-4], "--max_steps", str(stopped + 2), "--save_steps", "1000"], env=env).stdout
    assert f"resuming from {out / f'checkpoint-{stopped}'}" in resumed
    state = json.loads((out / f"checkpoint-{stopped + 2}" / "trainer_state.json").read_text())
    assert state["global_step"] == stopped + 2
    results = assert_adapter(out)
    assert (
        results["resumed_from_checkpoint"].endswith(f"checkpoint-{stopped}") and results["global_step"] == stopped + 2
    )

    again = run_module([*cmd[:-4], "--max_steps", str(stopped + 2), "--save_steps", "1000"], env=env).stdout
    assert "already trained to the end" in again  # a finished job re-submitted does not retrain or overwrite
    assert json.loads((out / "train_results.json").read_text()) == results

    runs = wandb_runs(wandb_dir)
    assert len(runs) == 2 and runs[0].run_id == runs[1].run_id == (out / "wandb_run_id").read_text()
    run = runs[1]
    digest = __import__("hashlib").sha256((data_dir / "manifest.json").read_bytes()).hexdigest()
    assert (run.project, run.run_group, run.job_type) == ("aligncultura", "demo-test", "sft")
    assert list(run.tags) == ["sft", "tiny-qwen3", f"data-{digest[:12]}"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["data_manifest"]["leakage"]["cross_split_pairs"] == 0
    assert config["SFTConfig"]["learning_rate"] == 2e-4 and config["ModelConfig"]["lora_r"] == 8
    leaked = [p for p in wandb_dir.rglob("*") if p.is_file() and API_KEY_MARKER.encode() in p.read_bytes()]
    assert not leaked, f"API key found in {leaked}"


def test_sft_then_dpo_from_adapter_merge_and_dpo_from_merged(tiny_models, data_dir, tmp_path):
    """DeepSeek-R1-Distill architecture: SFT -> DPO on the SFT adapter (ref = frozen copy) -> merge; DPO on merged."""
    off = ["--report_to", "none"]
    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    run_module(train_cmd("sft", "tiny-qwen2", tiny_models, data_dir, sft, *off))
    assert_adapter(sft)
    output = run_module(train_cmd("dpo", "tiny-qwen2", tiny_models, data_dir, dpo, "--sft_adapter", str(sft), *off))
    first = logged_steps(output.stdout + output.stderr)[0]
    # The reference is the SFT policy itself: at the first step policy == reference, so every reward is exactly 0.
    assert float(first["rewards/chosen"]) == 0 and float(first["rewards/margins"]) == 0
    assert_adapter(dpo, changed_from=sft)
    # Resume (as a requeued job does): the reference stays the SFT copy, not the resumed policy, so rewards != 0.
    dpo_cmd = train_cmd("dpo", "tiny-qwen2", tiny_models, data_dir, dpo, "--sft_adapter", str(sft), *off)
    resumed = run_module([*dpo_cmd, "--max_steps", "6"])
    assert f"resuming from {dpo / 'checkpoint-4'}" in resumed.stdout
    assert float(logged_steps(resumed.stdout + resumed.stderr)[0]["rewards/margins"]) != 0
    assert assert_adapter(dpo, changed_from=sft)["global_step"] == 6
    assert (dpo / "chat_template.jinja").read_text() == (tiny_models["tiny-qwen2"] / "chat_template.jinja").read_text()

    merged = tmp_path / "merged"
    run_module(["-m", "train.merge", "--adapter", str(dpo), "--output", str(merged)])
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 17, 99, 230, 7]])
    with torch.no_grad():
        expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_models["tiny-qwen2"]), dpo)
        merged_model = AutoModelForCausalLM.from_pretrained(merged)
        assert not hasattr(merged_model, "peft_config")
        torch.testing.assert_close(merged_model(ids).logits, expected(ids).logits, rtol=1e-4, atol=1e-4)

    # DPO from a merged SFT model: a fresh LoRA on it; the reference is the merged model (adapter disabled).
    sft_merged, dpo_merged = tmp_path / "sft_merged", tmp_path / "dpo_merged"
    run_module(["-m", "train.merge", "--adapter", str(sft), "--output", str(sft_merged)])
    config = yaml.safe_load((TINY / "tiny-qwen2" / "dpo_lora.yaml").read_text())
    del config["sft_adapter"]
    config.update(use_peft=True, lora_r=8, lora_alpha=16, lora_target_modules="all-linear")
    (tmp_path / "dpo_merged.yaml").write_text(yaml.safe_dump(config))
    run_module(
        [
            *["-m", "train.dpo", "--config", str(tmp_path / "dpo_merged.yaml")],
            *["--model_name_or_path", str(sft_merged), "--dataset_name", str(data_dir / "dpo")],
            *["--output_dir", str(dpo_merged), *off],
        ]
    )
    adapter_config = json.loads((dpo_merged / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(sft_merged)
    assert_adapter(dpo_merged)


def test_ddp_preempted_on_one_rank_resumes_then_dpo(tiny_models, data_dir, tmp_path):
    """2 processes (DDP over gloo): SIGUSR1 reaches only rank 1, yet both ranks stop at the same step and save."""
    config, off = REPO_ROOT / "accelerate_configs" / "cpu_2proc.yaml", ["--report_to", "none"]
    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    long_run = train_cmd("sft", "tiny-qwen3", tiny_models, data_dir, sft, "--max_steps", "2000", *off)
    returncode, output = run_and_signal(
        [accelerate, "launch", "--config_file", str(config), "--main_process_port", str(free_port()), *long_run],
        {"PYTHONPATH": str(REPO_ROOT)},
        lambda launcher: rank_process(launcher, 1),
    )
    assert returncode == 0, output[-4000:]
    stopped = int(re.search(r"preempted: .* at step (\d+), checkpoint-\d+ saved", output).group(1))
    assert (sft / f"checkpoint-{stopped}" / "adapter_model.safetensors").exists()
    resumed = launch(config, [*long_run[:-4], "--max_steps", str(stopped + 2), *off]).stdout
    assert f"resuming from {sft / f'checkpoint-{stopped}'}" in resumed
    assert "batch: global_batch=8 = per_device 4 x processes 2 x grad_accum 1" in resumed  # same batch, 2 processes
    results = assert_adapter(sft)
    assert results["world_size"] == 2 and results["global_step"] == stopped + 2
    launch(config, train_cmd("dpo", "tiny-qwen3", tiny_models, data_dir, dpo, "--sft_adapter", str(sft), *off))
    assert assert_adapter(dpo, changed_from=sft)["world_size"] == 2


def test_zero2_checkpoint_resumes_on_fewer_processes(tiny_models, data_dir, tmp_path):
    """A ZeRO-2 checkpoint of 2 processes resumed on 1 (DeepSpeed refuses its optimizer partitions there): the
    adapter, scheduler and step are restored, the optimizer state rebuilt, and the run says so; no crash loop."""
    off = ["--report_to", "none"]
    sft = tmp_path / "sft"
    two = cpu_variant("deepspeed_zero2", tmp_path)
    launch(two, train_cmd("sft", "tiny-qwen3", tiny_models, data_dir, sft, "--max_steps", "3", *off))
    saved = load_file(sft / "checkpoint-3" / "adapter_model.safetensors")
    one = cpu_variant("deepspeed_zero2", tmp_path, num_processes=1)
    resumed = launch(one, train_cmd("sft", "tiny-qwen3", tiny_models, data_dir, sft, "--max_steps", "5", *off)).stdout
    assert f"world size changed: {sft / 'checkpoint-3'} was saved by 2 processes, this run has 1;" in resumed
    results = assert_adapter(sft)
    assert (results["world_size"], results["global_step"]) == (1, 5)
    # The resumed run continued the checkpoint's adapter at the restored schedule: its steps 4 and 5 run at the
    # cosine tail (lr 0, then 1.9e-5) and a fresh Adam step moves a weight by at most ~lr, so lora_B moves by < 10% of
    # its size. A fresh adapter (lora_B = 0) would end ~its whole size away; the optimizer's initial lr (2e-4) ~50%.
    final = load_file(sft / "adapter_model.safetensors")
    lora_b = [k for k in saved if "lora_B" in k]
    size = max(saved[k].abs().max().item() for k in lora_b)
    moved = max((final[k] - saved[k]).abs().max().item() for k in lora_b)
    print(f"lora_B size at checkpoint-3 {size:.2e}, moved by the resumed steps {moved:.2e}")
    assert 0 < moved < 0.1 * size


def zero3_sharded(tmp_path: Path) -> Path:
    """The shipped ZeRO-3 accelerate config on 2 CPU processes, with persistence threshold 0: every parameter of the
    tiny models is partitioned (DeepSpeed's default keeps tensors below 100k elements whole, i.e. all of them)."""
    ds_config = {
        "zero_optimization": {
            "stage": 3,
            "stage3_param_persistence_threshold": 0,
            "stage3_gather_16bit_weights_on_model_save": True,
        },
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
    }
    (tmp_path / "zero3_sharded.json").write_text(json.dumps(ds_config))
    config = yaml.safe_load((REPO_ROOT / "accelerate_configs" / "deepspeed_zero3.yaml").read_text())
    config.update(num_processes=2)
    config.pop("mixed_precision")  # a DeepSpeed config file owns precision (none here: fp32 on CPU)
    zero3_init = config["deepspeed_config"]["zero3_init_flag"]
    config["deepspeed_config"] = {"deepspeed_config_file": str(tmp_path / "zero3_sharded.json")}
    config["deepspeed_config"]["zero3_init_flag"] = zero3_init
    path = tmp_path / "zero3_sharded.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def assert_zero3_saved_whole(out: Path) -> None:
    stats = json.loads((out / "zero3_stats.json").read_text())
    assert stats["partitioned"] == stats["parameters"] > stats["lora"] > 0, stats  # really sharded
    saved, gathered = load_file(out / "adapter_model.safetensors"), load_file(out / "gathered_adapter.safetensors")
    assert set(saved) == set(gathered)
    for key, tensor in saved.items():
        # full shapes (r x in / out x r of the 64-wide tiny model), not the empty shards of a naive save
        assert tensor.shape == gathered[key].shape and tensor.numel() >= 8 * 16, (key, tuple(tensor.shape))
        assert torch.equal(tensor, gathered[key].to(tensor.dtype)), key


def test_zero3_sharded_sft_then_dpo_save_whole_adapters(tiny_models, data_dir, tmp_path):
    off = ["--report_to", "none"]
    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    zero3, probe = zero3_sharded(tmp_path), str(REPO_ROOT / "tests" / "_zero3_probe.py")
    sft_args = train_cmd("sft", "tiny-qwen3", tiny_models, data_dir, sft, *off)[2:]  # without "-m train.sft"
    launch(zero3, [probe, "sft", *sft_args])
    assert_zero3_saved_whole(sft)
    assert assert_adapter(sft)["world_size"] == 2
    dpo_args = train_cmd("dpo", "tiny-qwen3", tiny_models, data_dir, dpo, "--sft_adapter", str(sft), *off)[2:]
    launch(zero3, [probe, "dpo", *dpo_args])
    assert_zero3_saved_whole(dpo)
    assert assert_adapter(dpo, changed_from=sft)["world_size"] == 2


def test_qlora_sft_then_dpo_keeps_the_compute_dtype(tiny_models, data_dir, tmp_path):
    """QLoRA SFT (TRL's path) then QLoRA DPO on its adapter. DPO must treat the 4-bit base as SFT does: no fp32
    upcast of embeddings / lm_head / norms, and a reference adapter computing in the policy's dtype, so at step 0
    policy == reference exactly: loss log 2 (logged to 4 decimals: 0.6931) and reward margin exactly 0."""
    sft, dpo = tmp_path / "sft_qlora", tmp_path / "dpo_qlora"
    common = ["--model_name_or_path", str(tiny_models["tiny-qwen3"]), "--report_to", "none"]
    run_module(
        [
            *["-m", "train.sft", "--config", str(TINY / "tiny-qwen3" / "sft_qlora.yaml"), *common],
            *["--dataset_name", str(data_dir / "sft"), "--output_dir", str(sft)],
        ]
    )
    assert assert_adapter(sft)["quantization"] == "4bit"
    output = run_module(
        [
            *["-m", "train.dpo", "--config", str(TINY / "tiny-qwen3" / "dpo_qlora.yaml"), *common],
            *["--dataset_name", str(data_dir / "dpo"), "--output_dir", str(dpo), "--sft_adapter", str(sft)],
        ]
    )
    first = logged_steps(output.stdout + output.stderr)[0]
    print("QLoRA DPO step 1:", first)
    assert float(first["loss"]) == round(math.log(2), 4) and float(first["rewards/margins"]) == 0
    assert assert_adapter(dpo, changed_from=sft)["quantization"] == "4bit"
