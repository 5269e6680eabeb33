"""Fast checks of the training code in-process: dataset guard, exact trained token spans, preemption callback."""

import hashlib
import json
import logging
import os
import shutil
import signal
from types import SimpleNamespace

import pytest
from datasets import Dataset, DatasetDict
from transformers import TrainerControl, TrainerState
from trl import DPOConfig, ModelConfig, SFTConfig

from core.cli import is_user_error
from data_pipeline.outputs import save_datasets
from tests._train_fixtures import GOOD, PROMPTS, write_training_data
from train.data import DatasetGuardError, load_guarded_dataset
from train.dpo import build_trainer as build_dpo_trainer
from train.preemption import PreemptionCallback, TolerantWandbCallback
from train.recipes import DPOScriptArguments, TrainScriptArguments
from train.resume import WorldSizeChangedError, deepspeed_checkpoint_world_size, resume_context
from train.sft import build_trainer as build_sft_trainer

REASONING = "<think>\nThe user asks about Onam; recall Kerala's harvest festival.\n</think>\n\n"
END = {"tiny-qwen3": "<|im_end|>\n", "tiny-qwen2": "<｜end▁of▁sentence｜>"}


# ------------------------------------------------------------------------------------------------------------- guard
def test_guard_accepts_clean_manifest(tmp_path):
    write_training_data(tmp_path)
    datasets, manifest, digest = load_guarded_dataset(str(tmp_path / "sft"), allow_unguarded=False)
    assert set(datasets) == {"train", "validation", "test"}
    assert manifest["leakage"]["cross_split_pairs"] == 0 and "guard_override" not in manifest
    assert len(digest) == 64


@pytest.mark.parametrize(
    "pairs, message",
    [(None, "no data manifest"), (3, "3 near-duplicate pairs cross splits")],
    ids=["missing-manifest", "leaky-manifest"],
)
def test_guard_refuses_then_override_is_logged(tmp_path, caplog, pairs, message):
    write_training_data(tmp_path, cross_split_pairs=pairs)
    with pytest.raises(DatasetGuardError, match=message) as refused:
        load_guarded_dataset(str(tmp_path / "dpo"), allow_unguarded=False)
    assert "manifest.json" in str(refused.value) and "--allow_unguarded_dataset" in str(refused.value)
    with caplog.at_level(logging.WARNING, logger="train.data"):
        datasets, manifest, _ = load_guarded_dataset(str(tmp_path / "dpo"), allow_unguarded=True)
    assert message in manifest["guard_override"]  # recorded for W&B and train_results, not only printed
    assert any("dataset guard overridden" in r.message for r in caplog.records)
    assert datasets["train"].num_rows == 16


def test_guard_refuses_an_empty_training_split(tmp_path):
    write_training_data(tmp_path)
    datasets = DatasetDict.load_from_disk(str(tmp_path / "dpo"))
    empty = DatasetDict({**datasets, "train": datasets["train"].select([])})
    build = tmp_path / "empty_build"  # a build whose judge left no preference pair in train, manifest and all
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["outputs"] = save_datasets(build, {"dpo": empty})
    (build / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetGuardError, match="split 'train' is missing or has no rows"):
        load_guarded_dataset(str(build / "dpo"), allow_unguarded=False)


@pytest.mark.parametrize(
    "content, message",
    [
        (json.dumps({"leakage": {"cross_split_rate": 0.0}}), r"manifest.json: field 'leakage.cross_split_pairs'"),
        (json.dumps({"leakage": {"cross_split_pairs": 0}}), r"manifest.json: field 'outputs': missing or not a"),
        ('{\n  "leakage": {cross_split_pairs: 0}\n}', r"manifest.json:2: not valid JSON"),
    ],
    ids=["missing-field", "no-output-hashes", "bad-json"],
)
def test_guard_names_the_bad_field_or_line(tmp_path, content, message):
    write_training_data(tmp_path)
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(DatasetGuardError, match=message):
        load_guarded_dataset(str(tmp_path / "sft"), allow_unguarded=False)


def arrow_sha256(split_dir) -> str:
    """By hand, as the manifest documents it: sha256 of the split's data-*.arrow files concatenated in name order."""
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(split_dir.glob("data-*.arrow")))).hexdigest()


def test_guard_refuses_a_folder_that_is_not_one_build(tmp_path):
    """Each split of the view must be the bytes the manifest hashed: a split from another build (here: the same view
    re-saved with one row fewer) or one the build never wrote is refused, naming the manifest field and the folder."""
    write_training_data(tmp_path)
    recorded = arrow_sha256(tmp_path / "sft" / "train")
    assert json.loads((tmp_path / "manifest.json").read_text())["outputs"]["sft/train"] == recorded
    other_build = DatasetDict.load_from_disk(str(tmp_path / "sft"))
    other_build = DatasetDict({**other_build, "train": other_build["train"].select(range(15))})
    other_build.save_to_disk(str(tmp_path / "other_sft"))
    shutil.rmtree(tmp_path / "sft" / "train")
    shutil.copytree(tmp_path / "other_sft" / "train", tmp_path / "sft" / "train")
    found = arrow_sha256(tmp_path / "sft" / "train")
    message = (f"{tmp_path / 'manifest.json'}: field 'outputs.sft/train': sha256 {recorded[:12]}... recorded, "
               f"{tmp_path / 'sft' / 'train'} is {found[:12]}...: the folder is not the build this manifest describes; "
               "refusing to train (pass --allow_unguarded_dataset to override)")  # fmt: skip
    with pytest.raises(DatasetGuardError) as refused:
        load_guarded_dataset(str(tmp_path / "sft"), allow_unguarded=False)
    assert str(refused.value) == message
    load_guarded_dataset(str(tmp_path / "dpo"), allow_unguarded=False)  # the dpo view is still the build's
    extra = DatasetDict.load_from_disk(str(tmp_path / "dpo"))
    DatasetDict({**extra, "extra": extra["test"]}).save_to_disk(str(tmp_path / "dpo_extra"))
    shutil.rmtree(tmp_path / "dpo")
    (tmp_path / "dpo_extra").rename(tmp_path / "dpo")
    with pytest.raises(DatasetGuardError, match=r"field 'outputs': .*dpo has splits \['extra'\] that this build did"):
        load_guarded_dataset(str(tmp_path / "dpo"), allow_unguarded=False)


# -------------------------------------------------------------------------------------------- trained token spans
def tiny_lora(path) -> ModelConfig:
    return ModelConfig(model_name_or_path=str(path), use_peft=True, lora_target_modules="all-linear")


def _datasets(rows: list[dict]) -> DatasetDict:
    return DatasetDict(train=Dataset.from_list(rows))


def _cpu_args(config_cls, tmp_path, **kwargs):
    return config_cls(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none", max_length=256, **kwargs
    )


@pytest.mark.parametrize("model", ["tiny-qwen3", "tiny-qwen2"])
def test_sft_trains_exactly_the_assistant_answer(tiny_models, tmp_path, model):
    plain = [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": GOOD.format(p=PROMPTS[0])}]
    reasoned = [plain[0], {"role": "assistant", "content": REASONING + "Onam is Kerala's harvest festival."}]
    script_args = TrainScriptArguments(dataset_name="unused")
    model_args = ModelConfig(
        model_name_or_path=str(tiny_models[model]), use_peft=True, lora_target_modules="all-linear"
    )
    training_args = _cpu_args(SFTConfig, tmp_path, assistant_only_loss=True, packing=False)
    trainer = build_sft_trainer(
        script_args, training_args, model_args, _datasets([{"messages": plain}, {"messages": reasoned}])
    )
    spans = []
    for row in trainer.train_dataset:
        trained = [t for t in row["labels"] if t != -100]  # the exact loss targets TRL built
        spans.append(trainer.processing_class.decode(trained))
        print(f"{model} trained span: {spans[-1]!r}")
    if model == "tiny-qwen3":  # thinking off: the empty think block Qwen3's template writes, then the answer
        assert spans[0] == "<think>\n\n</think>\n\n" + GOOD.format(p=PROMPTS[0]) + END[model]
    else:  # R1-Distill: an answer without reasoning gets a closed empty think block (inference opens "<think>\n")
        assert spans[0] == "<｜Assistant｜><think>\n\n</think>\n\n" + GOOD.format(p=PROMPTS[0]) + END[model]
        # Reasoning is kept, not cut at </think> as the inference template does.
        assert spans[1] == "<｜Assistant｜>" + REASONING + "Onam is Kerala's harvest festival." + END[model]
    full = trainer.processing_class.decode(trainer.train_dataset[0]["input_ids"])
    assert full.endswith(spans[0]) and PROMPTS[0] in full[: -len(spans[0])]  # the prompt is context, never a target


@pytest.mark.parametrize("model", ["tiny-qwen3", "tiny-qwen2"])
def test_dpo_scores_exactly_the_answers(tiny_models, tmp_path, model):
    # R1-Distill answers may carry reasoning; Qwen3 trains with thinking off, so its rows carry none.
    reasoning = REASONING if model == "tiny-qwen2" else ""
    row = {
        "prompt": [{"role": "user", "content": PROMPTS[1]}],
        "chosen": [{"role": "assistant", "content": reasoning + "Bow once at the gate."}],
        "rejected": [{"role": "assistant", "content": "Nothing matters."}],
    }
    script_args = DPOScriptArguments(dataset_name="unused")
    model_args = ModelConfig(
        model_name_or_path=str(tiny_models[model]), use_peft=True, lora_target_modules="all-linear"
    )
    trainer = build_dpo_trainer(script_args, _cpu_args(DPOConfig, tmp_path), model_args, _datasets([row]))
    tokenized = trainer.train_dataset[0]
    decode = trainer.processing_class.decode
    prompt, chosen, rejected = (decode(tokenized[k]) for k in ("prompt_ids", "chosen_ids", "rejected_ids"))
    print(f"{model} prompt={prompt!r}\n  chosen={chosen!r}\n  rejected={rejected!r}")
    assert PROMPTS[1] in prompt
    if model == "tiny-qwen3":  # thinking off: the empty think block is part of the prompt, as at inference
        assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert (chosen, rejected) == ("Bow once at the gate.<|im_end|>\n", "Nothing matters.<|im_end|>\n")
    else:  # the prompt opens "<think>\n" as at inference; reasoning is scored, not cut at </think>
        assert prompt.endswith("<｜Assistant｜><think>\n")
        assert chosen == REASONING.removeprefix("<think>\n") + "Bow once at the gate." + END[model]
        assert rejected == "\n</think>\n\nNothing matters." + END[model]


# ---------------------------------------------------------------------------------------------------- preemption
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_preemption_signal_requests_save_and_stop(signum):
    previous = {s: signal.getsignal(s) for s in PreemptionCallback.SIGNALS}
    try:
        callback = PreemptionCallback()
        args = SFTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none")
        state, control = TrainerState(global_step=7), TrainerControl()
        callback.on_step_end(args, state, control)
        assert not control.should_save and not control.should_training_stop  # no signal, no stop
        os.kill(os.getpid(), signum)
        callback.on_step_end(args, state, control)
        assert control.should_save and control.should_training_stop and callback.stopped_at_step == 7
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_wandb_failure_disables_wandb_not_training(capsys):
    """The W&B service killed with the job (scontrol requeue): the next on_log raises ConnectionResetError."""

    class DeadService:
        calls = 0

        def on_log(self, args, state, control, **kwargs):
            self.calls += 1
            raise ConnectionResetError(104, "Connection reset by peer")

    dead = DeadService()
    tolerant = TolerantWandbCallback(dead)
    args = SFTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none")
    state, control = TrainerState(global_step=12), TrainerControl()
    assert tolerant.on_log(args, state, control, logs={"loss": 1.0}) is None  # no exception reaches the Trainer
    tolerant.on_log(args, state, control, logs={"loss": 0.9})
    assert dead.calls == 1  # W&B is off for the rest of this process after the first failure
    assert "W&B on_log failed at step 12 (ConnectionResetError" in capsys.readouterr().out


# --------------------------------------------------------------------------------- resume on another world size
def _deepspeed_checkpoint(path, ranks: int, zero3: bool):
    tag = path / "global_step4"
    tag.mkdir(parents=True)
    (path / "latest").write_text("global_step4")
    for rank in range(ranks):
        (tag / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"")
        if zero3:
            (tag / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt").write_bytes(b"")
    if not zero3:
        (tag / "mp_rank_00_model_states.pt").write_bytes(b"")
    return path


def test_world_size_change_resumes_zero2_and_stops_zero3_with_one_line(tmp_path):
    zero2 = _deepspeed_checkpoint(tmp_path / "z2" / "checkpoint-4", ranks=2, zero3=False)
    zero3 = _deepspeed_checkpoint(tmp_path / "z3" / "checkpoint-4", ranks=2, zero3=True)
    assert deepspeed_checkpoint_world_size(str(zero2)) == (2, True)
    assert deepspeed_checkpoint_world_size(str(zero3)) == (2, False)
    assert deepspeed_checkpoint_world_size(str(tmp_path)) is None  # not a DeepSpeed checkpoint: resumes as usual
    printed, callbacks = [], []
    trainer = SimpleNamespace(accelerator=SimpleNamespace(print=printed.append), add_callback=callbacks.append)
    import transformers.trainer

    original = transformers.trainer.deepspeed_load_checkpoint
    with resume_context(str(zero2), 2, trainer):  # same world size: the Trainer's own loader
        assert transformers.trainer.deepspeed_load_checkpoint is original
    with resume_context(str(zero2), 1, trainer):
        assert transformers.trainer.deepspeed_load_checkpoint is not original  # module weights only
    assert transformers.trainer.deepspeed_load_checkpoint is original
    assert printed == [
        f"world size changed: {zero2} was saved by 2 processes, this run has 1; resuming its adapter weights, LR "
        "scheduler and step, with a freshly built optimizer state (DeepSpeed ZeRO optimizer state is partitioned per "
        "process)"
    ]
    assert [type(c).__name__ for c in callbacks] == ["SyncLearningRate"]  # the rebuilt optimizer gets the schedule's lr
    with pytest.raises(WorldSizeChangedError, match="saved by 2 processes, this run has 1; resume with 2") as stop:
        resume_context(str(zero3), 1, trainer)
    assert "\n" not in str(stop.value)
    assert is_user_error(stop.value)  # the command's one `error:` line with exit code 2, as every user error


def test_gpu_ranks_load_weights_onto_their_device_unless_the_launcher_shards(monkeypatch):
    """8 ranks x 16 GB host copies is what a bf16 load without device_map costs; on a GPU each rank loads onto its
    own device. ZeRO-3 (zero.Init) and FSDP (rank-0 loading) shard the load themselves: no device_map there."""
    import torch

    import train.runner
    from train.runner import model_init_kwargs

    lora = ModelConfig(model_name_or_path="m", use_peft=True)
    gpu = SimpleNamespace(device=torch.device("cuda", 0), trust_remote_code=False, model_init_kwargs=None)
    cpu = SimpleNamespace(device=torch.device("cpu"), trust_remote_code=False, model_init_kwargs=None)
    assert model_init_kwargs(lora, gpu)["device_map"] == {"": 0}
    assert "device_map" not in model_init_kwargs(lora, cpu)
    assert model_init_kwargs(ModelConfig(model_name_or_path="m", load_in_4bit=True), cpu)["device_map"] == "cpu"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert "device_map" not in model_init_kwargs(lora, gpu)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setattr(train.runner, "is_deepspeed_zero3_enabled", lambda: True)
    assert "device_map" not in model_init_kwargs(lora, gpu)
