"""The training choice made explicit (issue 13, section 4): a reasoning generator's <think> content kept in its own
field by the data pipeline, carried by the views, and put back into the think block by a recipe's keep_reasoning."""

import pytest
from datasets import Dataset, Features, List, Value
from transformers import AutoTokenizer
from trl.chat_template_utils import get_training_chat_template

from core.chat_templates import EMPTY_THINK
from core.llm import LLMConfig, build_llm
from core.llm.local_server import LocalOpenAIServer
from data_pipeline.generate import GenerateConfig, generate_candidates, split_reasoning
from data_pipeline.judge import JUDGE_FEATURES
from data_pipeline.schema import ROW_FEATURES, make_row, rows_to_dataset
from data_pipeline.views import build_views
from train.data import prepare_conversations


def test_split_reasoning_closed_unclosed_and_absent():
    answer = ("A harvest feast.", "Recall Onam.")
    assert split_reasoning("<think>\nRecall Onam.\n</think>\n\nA harvest feast.") == answer  # Qwen3 thinking mode
    assert split_reasoning("Recall Onam.\n</think>\n\nA harvest feast.") == answer  # R1: the prompt opened the block
    assert split_reasoning("<think>\nRecall Onam and") == ("", "Recall Onam and")  # never closed: no answer
    assert split_reasoning("A harvest feast.") == ("A harvest feast.", "")


def test_generate_keeps_the_reasoning_apart_from_the_answer(tmp_path):
    def reply(messages, params):
        return "<think>\nThe user asks about Onam.\n</think>\n\nOnam is a harvest festival of Kerala."

    rows = rows_to_dataset([make_row("a", "What is Onam?", [15], "test")])
    with LocalOpenAIServer(reply, model_name="reasoner") as server:
        llm = build_llm(LLMConfig(backend="openai", model="reasoner", base_url=server.base_url), None, "gen")
        kept = generate_candidates(rows, llm, GenerateConfig(k=2, keep_reasoning=True))
        plain = generate_candidates(rows, llm, GenerateConfig(k=2))
    assert kept["candidates"] == [["Onam is a harvest festival of Kerala."] * 2]  # the judge scores answers only
    assert kept["candidate_reasoning"] == [["The user asks about Onam."] * 2]
    assert "candidate_reasoning" not in plain.column_names and "<think>" in plain["candidates"][0][0]


def test_views_carry_the_chosen_and_rejected_reasoning():
    features = Features(
        {
            **ROW_FEATURES,
            "candidates": List(Value("string")),
            "candidate_reasoning": List(Value("string")),
            **JUDGE_FEATURES,
        }
    )
    score = {"helpful": 5.0, "harmless": 5.0, "honest": 5.0, "rationale": "", "passed": True}
    row = {
        **make_row("t1", "How is Holi celebrated?", [15], "test"),
        "candidates": ["Nobody knows.", "With colours, in India and Nepal."],
        "candidate_reasoning": ["", "Holi is a spring festival."],
        "candidate_scores": [score, score],
        "candidate_iterations": [0, 0],
        "chosen": "With colours, in India and Nepal.",
        "rejected": "Nobody knows.",
        "score_chosen": 5.0,
        "score_rejected": 2.0,
        "has_preference_pair": True,
        "recovered_in_stage2": False,
        "feedback_iterations": 0,
    }
    views = build_views({"train": Dataset.from_list([row], features=features)})
    assert views["sft"]["train"][0]["reasoning"] == "Holi is a spring festival."
    assert views["sft"]["train"][0]["messages"][1]["content"] == "With colours, in India and Nepal."  # answer only
    dpo = views["dpo"]["train"][0]
    assert (dpo["chosen_reasoning"], dpo["rejected_reasoning"]) == ("Holi is a spring festival.", "")


def _sft_rows(reasoning: str | None) -> Dataset:
    row = {
        "messages": [
            {"role": "user", "content": "How is Holi celebrated?"},
            {"role": "assistant", "content": "With colours."},
        ]
    }
    if reasoning is not None:
        row["reasoning"] = reasoning
    return Dataset.from_list([row])


def test_r1_recipe_trains_answer_directly_or_reason_then_answer(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["tiny-qwen2"])  # the real R1-Distill template
    direct = prepare_conversations(_sft_rows("Holi is a spring festival."), tokenizer, ["messages"], False)
    assert direct[0]["messages"][1]["content"] == EMPTY_THINK + "With colours."  # reasoning is dropped
    kept = prepare_conversations(_sft_rows("Holi is a spring festival."), tokenizer, ["messages"], False, True)
    assert kept[0]["messages"][1]["content"] == "<think>\nHoli is a spring festival.\n</think>\n\nWith colours."
    no_trace = prepare_conversations(_sft_rows(""), tokenizer, ["messages"], False, True)
    assert no_trace[0]["messages"][1]["content"] == EMPTY_THINK + "With colours."  # no trace: answers directly
    # TRL's training template (what SFT renders with) keeps the trace in the trained text; the inference one cuts it.
    tokenizer.chat_template = get_training_chat_template(tokenizer)
    rendered = tokenizer.apply_chat_template(kept[0]["messages"], tokenize=False)
    assert "<think>\nHoli is a spring festival.\n</think>\n\nWith colours." in rendered
    with pytest.raises(ValueError, match=r"keep_reasoning: the dataset has no \['reasoning'\] column"):
        prepare_conversations(_sft_rows(None), tokenizer, ["messages"], False, True)


def test_qwen3_keep_reasoning_needs_thinking_on(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["tiny-qwen3"])
    with pytest.raises(ValueError, match="needs enable_thinking: true"):
        prepare_conversations(_sft_rows("Holi is a spring festival."), tokenizer, ["messages"], False, True)
    kept = prepare_conversations(_sft_rows("Holi is a spring festival."), tokenizer, ["messages"], True, True)
    assert kept[0]["messages"][1]["content"].startswith("<think>\nHoli is a spring festival.\n</think>")
    assert kept[0]["chat_template_kwargs"] == {"enable_thinking": True}
