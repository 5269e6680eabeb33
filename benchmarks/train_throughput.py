"""Benchmark: LoRA SFT tokens/s of TRL's padded default vs this repo's recipe (packing); a DPO step vs an SFT step.

``python -m benchmarks.train_throughput`` (CPU): a random-weight Qwen3-architecture model (hidden 256, 4 layers: big
enough that per-step Trainer overhead does not dominate) and a length-skewed conversation set (80% short answers,
20% long ones, like real SFT data). Four runs, each in a fresh process so peak memory is its own:

- ``sft_padded``:  TRL's default SFT (no packing: every batch padded to its longest row), full-sequence loss;
- ``sft_recipe``:  configs/train recipe settings: BFD packing -> padding-free batches, assistant-only loss;
- ``sft_pairs``:   padded SFT on exactly the DPO batches' sequences (prompt+chosen and prompt+rejected as rows);
- ``dpo``:         DPO on those pairs as train.dpo runs it (a PeftModel whose frozen "ref" adapter copy is the
                   reference), i.e. the same tokens as ``sft_pairs`` plus the reference forward pass.

tokens/s counts real (non-pad) tokens per second of process CPU time on CPU (one thread: robust to other load on
a shared machine) and of wall time on GPU. Peak memory: on CPU the peak RSS during the timed steps above the process's
RSS before the model was built (VmHWM, reset through /proc/self/clear_refs); on GPU torch.cuda.max_memory_allocated.

``--gpu --model qwen3-8b`` (or ``deepseek-r1-distill-qwen-7b``) builds the real architecture from its config shapes
with random bf16 weights (no download) at max_length 2048, with activation checkpointing as in the recipes, and adds
MFU: achieved model FLOPs over the GPU's dense bf16 peak, with LoRA training counted as 4N FLOPs/token (forward 2N,
backward through the frozen base 2N; no weight gradients for it) plus attention, and DPO adding a 2N reference pass.

``--estimate --model qwen3-8b --recipe sft_qlora|dpo_qlora`` trains nothing: it prints the one-GPU memory estimate of
that QLoRA recipe (benchmarks/memory_estimate.py), what the recipes' 24 GB claim rests on until ``--gpu`` measures it.
"""

import argparse
import multiprocessing
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.memory_estimate import run as estimate_memory
from benchmarks.model_shapes import REAL_SHAPES, build_model, parameter_count
from core.cli import Command, UserError, run_command

CPU_SHAPE = dict(
    arch="qwen3",
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=32,
    intermediate_size=1024,
    vocab_size=1024,
    max_position_embeddings=4096,
    rope_theta=1_000_000.0,
)
DENSE_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # vendor dense (no sparsity) peaks


@dataclass
class Setup:
    shape: dict
    device: str  # "cpu" | "cuda"
    max_length: int
    padded_rows: int  # rows per padded SFT batch
    packed_bins: int  # max_length-token bins per packed SFT batch
    dpo_pairs: int  # pairs per DPO batch (the SFT-on-pairs batch has twice as many rows)
    steps: int
    warmup: int
    activation_checkpointing: bool
    lora_r: int = 16
    seed: int = 0


# ----------------------------------------------------------------------------------------------------------- data
def skewed_lengths(n: int, max_length: int, rng: np.random.Generator) -> np.ndarray:
    """Answer lengths: 80% short (2-10% of max_length), 20% long (40-90%)."""
    long = rng.random(n) < 0.2
    low, high = np.where(long, 0.4, 0.02), np.where(long, 0.9, 0.10)
    return (max_length * rng.uniform(low, high)).astype(int) + 1


def make_text(tokenizer, n_tokens: int, rng: np.random.Generator) -> str:
    """Text of about n_tokens tokens from random ids of the tokenizer's ordinary vocabulary."""
    ids = rng.integers(300, len(tokenizer) - 16, size=n_tokens)
    return tokenizer.decode(ids.tolist())


def make_datasets(tokenizer, setup: Setup, n_rows: int):
    """(SFT rows, DPO pairs, SFT rows of the DPO pairs' sequences), all seeded."""
    from datasets import Dataset

    rng = np.random.default_rng(setup.seed)
    prompts = [make_text(tokenizer, int(n), rng) for n in rng.integers(8, 32, size=n_rows)]
    answers = [make_text(tokenizer, int(n), rng) for n in skewed_lengths(n_rows, setup.max_length - 48, rng)]
    others = [make_text(tokenizer, int(n), rng) for n in skewed_lengths(n_rows, setup.max_length - 48, rng)]

    def turn(role, content):
        return [{"role": role, "content": content}]

    sft = Dataset.from_list(
        [{"messages": turn("user", p) + turn("assistant", a)} for p, a in zip(prompts, answers, strict=True)]
    )
    dpo = Dataset.from_list(
        [
            {"prompt": turn("user", p), "chosen": turn("assistant", a), "rejected": turn("assistant", o)}
            for p, a, o in zip(prompts, answers, others, strict=True)
        ]
    )
    # Row 2i / 2i+1 are pair i's chosen / rejected sequence: an unshuffled batch of 2B rows = a DPO batch of B pairs.
    pairs = Dataset.from_list(
        [
            {"messages": turn("user", p) + turn("assistant", c)}
            for p, a, o in zip(prompts, answers, others, strict=True)
            for c in (a, o)
        ]
    )
    return sft, dpo, pairs


# ------------------------------------------------------------------------------------------------------- measuring
def rss_bytes(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _timed_window_callback(setup: Setup):
    import torch
    from transformers import TrainerCallback

    # CPU: the process's CPU time (one thread), so other load on a shared machine does not count; GPU: wall time.
    clock = time.perf_counter if setup.device == "cuda" else time.process_time

    class Window(TrainerCallback):
        """Times steps warmup+1 .. warmup+steps and records tokens and peak memory over exactly that window."""

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == setup.warmup:
                if setup.device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                else:
                    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
                self.tokens0, self.t0 = state.num_input_tokens_seen, clock()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == setup.warmup + setup.steps:
                if setup.device == "cuda":
                    torch.cuda.synchronize()
                    self.peak = torch.cuda.max_memory_allocated()
                else:
                    self.peak = rss_bytes("VmHWM")
                self.seconds = clock() - self.t0
                self.tokens = state.num_input_tokens_seen - self.tokens0

    return Window()


def measure(run: str, setup: Setup, tokenizer_dir: str) -> dict:
    """One run in this (fresh) process: build model + trainer, train warmup+steps, return the window's figures."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    if setup.device == "cpu":
        torch.set_num_threads(1)
    baseline = rss_bytes() if setup.device == "cpu" else 0
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    total_steps = setup.warmup + setup.steps
    n_rows = max(setup.padded_rows, 8 * setup.packed_bins, setup.dpo_pairs) * total_steps * 2
    sft_rows, dpo_rows, pair_rows = make_datasets(tokenizer, setup, n_rows)
    model = build_model(setup.shape, setup.device, setup.seed)
    lora = LoraConfig(r=setup.lora_r, lora_alpha=2 * setup.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(
        output_dir=tempfile.mkdtemp(prefix=f"bench-{run}-"),
        max_steps=total_steps,
        learning_rate=1e-4,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=setup.device == "cpu",
        bf16=setup.device == "cuda",
        gradient_checkpointing=setup.activation_checkpointing,
        include_num_input_tokens_seen="non_padding",
        max_length=setup.max_length,
        seed=setup.seed,
        dataloader_drop_last=True,
        train_sampling_strategy="sequential",  # sft_pairs batch i holds exactly DPO batch i's sequences
    )
    window = _timed_window_callback(setup)
    if run == "dpo":
        config = DPOConfig(**common, per_device_train_batch_size=setup.dpo_pairs, beta=0.1)
        policy = get_peft_model(model, lora)  # as train.dpo: a PeftModel, so TRL adds the frozen "ref" adapter copy
        trainer = DPOTrainer(
            model=policy, args=config, train_dataset=dpo_rows, processing_class=tokenizer, callbacks=[window]
        )
    else:
        settings = {
            "sft_padded": dict(per_device_train_batch_size=setup.padded_rows),
            "sft_recipe": dict(per_device_train_batch_size=setup.packed_bins, packing=True, assistant_only_loss=True),
            "sft_pairs": dict(per_device_train_batch_size=2 * setup.dpo_pairs, shuffle_dataset=False),
        }[run]
        config = SFTConfig(**common, **settings)
        dataset = pair_rows if run == "sft_pairs" else sft_rows
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[window],
        )
    trainer.train()
    return {
        "run": run,
        "tokens_per_s": window.tokens / window.seconds,
        "step_s": window.seconds / setup.steps,
        "tokens_per_step": window.tokens / setup.steps,
        "peak_mem_bytes": window.peak - baseline,
    }


def _child(queue, run, setup, tokenizer_dir):
    queue.put(measure(run, setup, tokenizer_dir))


def measure_in_fresh_process(run: str, setup: Setup, tokenizer_dir: str) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, run, setup, tokenizer_dir))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"benchmark run {run} exited with {process.exitcode}")
    return result


def model_flops_per_token(shape: dict, n_params: int, seq_len: int, dpo: bool) -> float:
    """LoRA training FLOPs per token: 4N (forward 2N + input-gradient backward 2N) + causal attention (fwd+bwd).

    DPO adds the reference forward pass (2N + attention forward) on every token.
    """
    head_dim = shape.get("head_dim", shape["hidden_size"] // shape["num_attention_heads"])
    attn_fwd = 2 * shape["num_hidden_layers"] * shape["num_attention_heads"] * head_dim * seq_len  # QK^T+AV, causal/2
    train = 4 * n_params + 2 * attn_fwd
    return train + (2 * n_params + attn_fwd if dpo else 0)


def peak_tflops(device_name: str) -> float | None:
    return next((tflops for key, tflops in DENSE_BF16_TFLOPS.items() if key in device_name), None)


def report(results: dict[str, dict], setup: Setup, n_params: int, device_name: str, peak: float | None) -> str:
    lines = [f"device: {device_name}; params: {n_params:,}; max_length {setup.max_length}; LoRA r={setup.lora_r}"]
    lines.append(f"{'run':12} {'tokens/s':>10} {'step_s':>8} {'tokens/step':>12} {'peak_mem_MiB':>13} {'MFU':>7}")
    for run, r in results.items():
        mfu = ""
        if peak:
            flops = model_flops_per_token(setup.shape, n_params, setup.max_length // 2, run == "dpo")
            mfu = f"{r['tokens_per_s'] * flops / (peak * 1e12):.1%}"
        lines.append(
            f"{run:12} {r['tokens_per_s']:10,.0f} {r['step_s']:8.3f} {r['tokens_per_step']:12,.0f} "
            f"{r['peak_mem_bytes'] / 2**20:13,.1f} {mfu:>7}"
        )
    recipe_vs_padded = results["sft_recipe"]["tokens_per_s"] / results["sft_padded"]["tokens_per_s"]
    dpo_time = results["dpo"]["step_s"] / results["sft_pairs"]["step_s"]
    dpo_mem = results["dpo"]["peak_mem_bytes"] / results["sft_pairs"]["peak_mem_bytes"]
    lines.append(
        f"targets: recipe >= 1.5x padded ({recipe_vs_padded:.2f}x), DPO step <= 2.2x SFT step ({dpo_time:.2f}x), "
        f"DPO peak memory <= 1.15x SFT ({dpo_mem:.2f}x)"
    )
    lines.append(
        f"train_throughput: sft_recipe_vs_padded={recipe_vs_padded:.2f}x dpo_vs_sft_time={dpo_time:.2f}x "
        f"dpo_vs_sft_mem={dpo_mem:.2f}x"
    )
    return "\n".join(lines)


# Per-device defaults of the command-line knobs, then the fixed settings (GPU: the recipes' activation checkpointing).
DEFAULTS = {
    "cuda": dict(max_length=2048, padded_rows=8, packed_bins=2, dpo_pairs=2, steps=5),
    "cpu": dict(max_length=1024, padded_rows=8, packed_bins=1, dpo_pairs=2, steps=4),
}


def make_setup(args) -> Setup:
    device = "cuda" if args.gpu else "cpu"
    knobs = {name: getattr(args, name) or default for name, default in DEFAULTS[device].items()}
    return Setup(
        shape=REAL_SHAPES[args.model] if args.gpu else CPU_SHAPE,
        device=device,
        warmup=2 if args.gpu else 1,
        activation_checkpointing=args.gpu,
        **knobs,
    )


COMMAND = Command(
    name="python -m benchmarks.train_throughput",
    purpose=__doc__.splitlines()[0],
    example="python -m benchmarks.train_throughput --gpu --model qwen3-8b   (on CPU: no flags)",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    parser.add_argument("--gpu", action="store_true", help="real architecture on the GPU (needs --model)")
    parser.add_argument("--model", choices=sorted(REAL_SHAPES), help="real model shapes for --gpu")
    parser.add_argument("--max_length", type=int)
    parser.add_argument("--padded_rows", type=int)
    parser.add_argument("--packed_bins", type=int)
    parser.add_argument("--dpo_pairs", type=int)
    parser.add_argument("--steps", type=int, help="timed steps per run (after warm-up)")
    parser.add_argument("--peak_tflops", type=float, help="dense bf16 peak of the GPU, if not in the built-in table")
    parser.add_argument(
        "--estimate", action="store_true", help="print the GPU memory estimate of --recipe on --model (no training)"
    )
    parser.add_argument("--recipe", choices=["sft_qlora", "dpo_qlora"], help="with --estimate: the QLoRA recipe")
    return parser


def main(argv: list[str] | None = None) -> str:
    args = make_parser().parse_args(argv)
    if args.estimate:
        if args.recipe is None or args.model is None:
            raise UserError("--estimate needs --model and --recipe sft_qlora|dpo_qlora")
        return estimate_memory(args.model, args.recipe, REAL_SHAPES[args.model])
    if args.gpu and args.model is None:
        raise UserError(f"--gpu needs --model ({' or '.join(sorted(REAL_SHAPES))}): the real shapes to measure")
    if args.model is not None and not args.gpu:
        raise UserError("--model sets the real shapes of a --gpu or --estimate run; the CPU run uses its own shape")
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--gpu: no CUDA device here (torch {torch.__version__}, CUDA build: {torch.version.cuda})")
    setup = make_setup(args)

    from train.tiny_models import qwen3_tokenizer

    device_name, peak = "cpu (1 thread, process CPU time)", None
    if setup.device == "cuda":
        import torch

        device_name = torch.cuda.get_device_name()
        peak = args.peak_tflops or peak_tflops(device_name)
    n_params = parameter_count(setup.shape)
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        qwen3_tokenizer().save_pretrained(tokenizer_dir)
        results = {}
        for run in ["sft_padded", "sft_recipe", "sft_pairs", "dpo"]:
            results[run] = measure_in_fresh_process(run, setup, tokenizer_dir)
            print(f"  {run}: {results[run]['tokens_per_s']:,.0f} tokens/s", flush=True)
    text = report(results, setup, n_params, device_name, peak)
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
