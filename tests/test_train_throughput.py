"""The throughput benchmark's logic on CPU with a tiny configuration (its --gpu path uses the same functions)."""

import argparse
import re

import pytest
from datasets import Dataset
from trl.data_utils import pack_dataset

from benchmarks.model_shapes import REAL_SHAPES, parameter_count
from benchmarks.train_throughput import (
    CPU_SHAPE,
    Setup,
    make_datasets,
    make_setup,
    measure_in_fresh_process,
    model_flops_per_token,
    report,
)
from train.tiny_models import qwen3_tokenizer, tiny_config_kwargs

# train.tiny_models' CPU-test shapes (tokenizer ids and embedding tying are set by build_model itself).
TINY_SHAPE = dict(
    arch="qwen3",
    rope_theta=1_000_000.0,
    **{
        name: value
        for name, value in tiny_config_kwargs(qwen3_tokenizer()).items()
        if not name.endswith("_token_id") and name != "tie_word_embeddings"
    },
)


def test_real_architectures_have_the_published_parameter_counts():
    # Built on the meta device from the config shapes: the --gpu path trains exactly these architectures.
    assert parameter_count(REAL_SHAPES["qwen3-8b"]) == 8_190_735_360
    assert parameter_count(REAL_SHAPES["deepseek-r1-distill-qwen-7b"]) == 7_615_616_512


def test_gpu_setup_matches_the_recipes():
    setup = make_setup(
        type(
            "Args",
            (),
            dict(
                gpu=True,
                model="qwen3-8b",
                max_length=None,
                padded_rows=None,
                packed_bins=None,
                dpo_pairs=None,
                steps=None,
            ),
        )()
    )
    assert setup.device == "cuda" and setup.max_length == 2048 and setup.activation_checkpointing
    assert setup.shape is REAL_SHAPES["qwen3-8b"]
    cpu = make_setup(
        argparse.Namespace(
            gpu=False, model="qwen3-8b", max_length=None, padded_rows=None, packed_bins=None, dpo_pairs=None, steps=3
        )
    )
    assert cpu.device == "cpu" and cpu.shape is CPU_SHAPE and not cpu.activation_checkpointing
    assert cpu.max_length == 1024 and cpu.steps == 3  # CPU default, and a given knob wins over it


def test_flops_model():
    n = 8_190_735_360
    sft = model_flops_per_token(REAL_SHAPES["qwen3-8b"], n, 1024, dpo=False)
    dpo = model_flops_per_token(REAL_SHAPES["qwen3-8b"], n, 1024, dpo=True)
    assert 4 * n < sft < 4.3 * n  # attention adds a few percent at 1k context
    assert dpo - sft == pytest.approx(sft / 2)  # the reference pass is a forward: half the LoRA training FLOPs


def test_pairs_dataset_holds_exactly_the_dpo_sequences(tmp_path):
    tokenizer = qwen3_tokenizer()
    setup = Setup(TINY_SHAPE, "cpu", 128, 4, 1, 2, steps=1, warmup=1, activation_checkpointing=False)
    sft, dpo, pairs = make_datasets(tokenizer, setup, 6)
    assert len(pairs) == 2 * len(dpo) == 2 * len(sft)
    for i in range(len(dpo)):
        assert pairs[2 * i]["messages"] == dpo[i]["prompt"] + dpo[i]["chosen"]
        assert pairs[2 * i + 1]["messages"] == dpo[i]["prompt"] + dpo[i]["rejected"]
    lengths = sorted(len(tokenizer(row["chosen"][0]["content"])["input_ids"]) for row in dpo)
    assert lengths[-1] > 3 * lengths[0]  # length-skewed


def chat_token_ids(tokenizer, rows) -> list[list[int]]:
    return [tokenizer.apply_chat_template(r["messages"], return_dict=True)["input_ids"] for r in rows]


@pytest.mark.slow  # four training processes
def test_all_runs_measure_and_report_with_mfu(tmp_path):
    tokenizer_dir = tmp_path / "tok"
    qwen3_tokenizer().save_pretrained(tokenizer_dir)
    setup = Setup(TINY_SHAPE, "cpu", 128, 4, 1, 2, steps=2, warmup=1, activation_checkpointing=False, lora_r=4)
    # Each run in a fresh process, as the benchmark does: peak memory is measured against that process's baseline.
    runs = ["sft_padded", "sft_recipe", "sft_pairs", "dpo"]
    results = {run: measure_in_fresh_process(run, setup, str(tokenizer_dir)) for run in runs}
    # Tokens per step, counted from the data: the benchmark builds 48 rows (max(4 padded rows, 8 x 1 packed bin,
    # 2 pairs) x 3 steps x 2) and times steps 2-3 after 1 warm-up step, so each run's figure is half the real (non-pad)
    # tokens of its batches 1 and 2. Each sequence is its chat-template tokens, all under max_length (no truncation).
    tokenizer = qwen3_tokenizer()
    sft, _, pairs = make_datasets(tokenizer, setup, 48)
    sft_ids, pair_ids = chat_token_ids(tokenizer, sft), chat_token_ids(tokenizer, pairs)
    assert max(map(len, sft_ids + pair_ids)) < setup.max_length
    bins = pack_dataset(Dataset.from_dict({"input_ids": sft_ids}), setup.max_length, strategy="bfd")["input_ids"]
    pair_tokens = sum(map(len, pair_ids[4:12])) / 2  # 2 pairs = 4 sequences a step: rows 4-11
    expected = {
        "sft_padded": sum(map(len, sft_ids[4:12])) / 2,  # 4 rows a step: rows 4-11
        "sft_recipe": sum(map(len, bins[1:3])) / 2,  # one bin a step, packed by TRL's best-fit decreasing: bins 1-2
        "sft_pairs": pair_tokens,
        "dpo": pair_tokens,  # the same sequences as sft_pairs
    }
    assert {run: r["tokens_per_step"] for run, r in results.items()} == expected  # 198, 128, 234.5, 234.5
    for r in results.values():  # tokens/s is the same window's tokens over its seconds
        assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / r["step_s"], rel=1e-12)
        assert r["step_s"] > 0 and r["peak_mem_bytes"] > 0
    text = report(results, setup, parameter_count(TINY_SHAPE), "fake-gpu", peak=0.001)
    print(text)
    assert re.search(r"^dpo .* \d+\.\d%$", text, re.M)  # an MFU column when a peak is known
    last = text.splitlines()[-1]
    assert re.fullmatch(
        r"train_throughput: sft_recipe_vs_padded=\d+\.\d\dx dpo_vs_sft_time=\d+\.\d\dx "
        r"dpo_vs_sft_mem=\d+\.\d\dx",
        last,
    )


@pytest.mark.parametrize("recipe", ["sft_qlora", "dpo_qlora"])
def test_qlora_memory_estimate_of_the_real_recipes(recipe, capsys):
    """The estimate reads the recipe (length, batch, LoRA r) and the real architecture; Qwen3-8B's 8,190,735,360
    parameters split into 4-bit decoder linears and bf16 embeddings / lm_head / norms, and the total fits 24 GB."""
    from benchmarks.memory_estimate import load_recipe, parameter_groups
    from benchmarks.train_throughput import main

    groups = parameter_groups(REAL_SHAPES["qwen3-8b"])
    assert groups["quantized"] + groups["bf16"] == 8_190_735_360
    assert groups["bf16"] == 2 * 151936 * 4096 + 36 * (2 * 4096 + 2 * 128) + 4096  # embeddings, lm_head, norms
    loaded = load_recipe("qwen3-8b", recipe)
    assert (loaded.max_length, loaded.per_device, loaded.lora_r) == (1024, 2 if recipe == "dpo_qlora" else 1, 16)
    text = main(["--estimate", "--model", "qwen3-8b", "--recipe", recipe])
    assert text == capsys.readouterr().out.strip()
    match = re.fullmatch(
        rf"estimate: model=qwen3-8b recipe={recipe} peak_gib=(\d+\.\d) budget_gib=24 fits=yes", text.splitlines()[-1]
    )
    assert match and 6 < float(match.group(1)) < 24  # above the ~6 GB of 4-bit weights, within the 24 GB card
