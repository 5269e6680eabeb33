"""SFT / DPO views: exact TRL 1.x conversational schemas, accepted by TRL's own data utilities."""

import pytest
from datasets import Dataset, DatasetDict, Features, List, Value, load_from_disk

from data_pipeline.judge import JUDGE_FEATURES
from data_pipeline.schema import ROW_FEATURES, make_row
from data_pipeline.views import build_views

JUDGED_FEATURES = Features({**ROW_FEATURES, "candidates": List(Value("string")), **JUDGE_FEATURES})


def judged_row(id: str, prompt: str, chosen: str, rejected: str | None, subdomains=(15,)) -> dict:
    passed = {"helpful": 5.0, "harmless": 5.0, "honest": 4.0, "rationale": "good", "passed": True}
    failed = {"helpful": 2.0, "harmless": 5.0, "honest": 3.0, "rationale": "vague", "passed": False}
    candidates = [chosen] + ([rejected] if rejected is not None else [])
    return {
        **make_row(id, prompt, list(subdomains), "test"),
        "candidates": candidates,
        "candidate_scores": [passed] + ([failed] if rejected is not None else []),
        "candidate_iterations": [0] * len(candidates),
        "chosen": chosen,
        "rejected": rejected or "",
        "score_chosen": 14 / 3,
        "score_rejected": 10 / 3 if rejected is not None else None,
        "has_preference_pair": rejected is not None,
        "recovered_in_stage2": False,
        "feedback_iterations": 0,
    }


@pytest.fixture
def judged() -> DatasetDict:
    train = [
        judged_row("t1", "How is Holi celebrated?", "With colours, in India and Nepal.", "Nobody knows."),
        judged_row("t2", "What is sumo?", "A Japanese wrestling tradition.", None, subdomains=(14, 13)),
    ]
    test = [judged_row("s1", "What is a haka?", "A Māori ceremonial dance.", None)]
    return DatasetDict({split: Dataset.from_list(rows, features=JUDGED_FEATURES) for split, rows in
                        {"train": train, "test": test}.items()})  # fmt: skip


def test_sft_and_dpo_schemas(judged, tmp_path):
    views = build_views(judged)
    sft, dpo = views["sft"], views["dpo"]
    assert list(sft) == ["train", "test"] and list(dpo) == ["train", "test"]
    assert sft["train"].column_names == ["messages", "id", "subdomains"]
    assert sft["train"][1] == {
        "messages": [
            {"role": "user", "content": "What is sumo?"},
            {"role": "assistant", "content": "A Japanese wrestling tradition."},
        ],
        "id": "t2",
        "subdomains": [14, 13],
    }
    assert len(sft["test"]) == 1
    # Only rows with a preference pair become DPO rows; a split without pairs is empty but typed.
    assert dpo["train"].column_names == [
        "prompt", "chosen", "rejected", "id", "subdomains", "score_chosen", "score_rejected"]  # fmt: skip
    assert dpo["train"].to_list() == [
        {
            "prompt": [{"role": "user", "content": "How is Holi celebrated?"}],
            "chosen": [{"role": "assistant", "content": "With colours, in India and Nepal."}],
            "rejected": [{"role": "assistant", "content": "Nobody knows."}],
            "id": "t1",
            "subdomains": [15],
            "score_chosen": pytest.approx(14 / 3),
            "score_rejected": pytest.approx(10 / 3),
        }
    ]
    assert len(dpo["test"]) == 0 and dpo["test"].features == dpo["train"].features
    # What the pipeline writes and training loads back is the same. datasets 5.2 writes a zero-row split as zero
    # shards, which load_from_disk cannot read (IndexError): an empty split has to be saved as one shard.
    dpo.save_to_disk(tmp_path / "dpo", num_shards={split: 1 for split, ds in dpo.items() if len(ds) == 0})
    loaded = load_from_disk(tmp_path / "dpo")
    assert loaded["train"].to_list() == dpo["train"].to_list() and len(loaded["test"]) == 0


def test_missing_columns_name_the_split(judged):
    broken = DatasetDict({"train": judged["train"], "validation": judged["test"].remove_columns("chosen")})
    with pytest.raises(ValueError, match=r"split 'validation': missing column\(s\) \['chosen'\]"):
        build_views(broken)


def test_trl_accepts_the_views(judged, tiny_models):
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["tiny-qwen3"])
    views = build_views(judged)
    sft_row, dpo_row = views["sft"]["train"][0], views["dpo"]["train"][0]
    assert is_conversational(sft_row) and is_conversational(dpo_row)

    text = maybe_apply_chat_template(sft_row, tokenizer)["text"]
    assert "How is Holi celebrated?" in text and "With colours, in India and Nepal." in text
    assert text.index("<|im_start|>user") < text.index("<|im_start|>assistant")

    rendered = maybe_apply_chat_template(dpo_row, tokenizer)
    assert rendered["prompt"].rstrip().endswith("<|im_start|>assistant")  # generation prompt, no answer
    assert "With colours, in India and Nepal." in rendered["chosen"] and "Nobody knows." in rendered["rejected"]
    assert "How is Holi celebrated?" not in rendered["chosen"]  # the completion holds the answer only
