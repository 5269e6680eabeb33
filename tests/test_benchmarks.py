"""The lm-eval benchmark tasks (eval/lm_eval_tasks) on their fixtures, through the eval config route, on tiny models.

One module-scoped run of the config route (tiny Qwen3 base and the same base + a random LoRA adapter, every task on
its fixture file) feeds the metric, breakdown, pairing and report tests; the accuracy test recomputes one task's
scores with transformers directly.
"""

import json

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from data_pipeline.dedup import DedupConfig, remove_contaminated
from data_pipeline.pipeline import load_eval_prompts
from eval import report_benchmarks
from eval.benchmark_tasks import (
    FIXTURES_DIR,
    BenchmarkInputError,
    build_task,
    export_questions,
    task_config,
    task_manager,
)
from eval.benchmarks import add_benchmarks
from eval.config import BENCHMARK_TASKS, BenchmarksSpec, EvalConfig

# The hub rows' fields and types (dataset cards / viewers at the pinned revisions; see each task YAML).
HUB_FIELDS = {
    "culturalbench_easy": {
        "data_idx": int,
        "question_idx": int,
        "prompt_question": str,
        "prompt_option_a": str,
        "prompt_option_b": str,
        "prompt_option_c": str,
        "prompt_option_d": str,
        "answer": str,
        "country": str,
    },
    "culturalbench_hard": {
        "data_idx": int,
        "question_idx": int,
        "prompt_question": str,
        "prompt_option": str,
        "answer": bool,
        "country": str,
    },
    "blend_mcq": {
        "MCQID": str,
        "ID": str,
        "country": str,
        "prompt": str,
        "choices": str,  # a JSON object letter -> option, stored as a string
        "choice_countries": str,
        "answer_idx": str,
    },
    "normad": {
        "ID": int,
        "Country": str,
        "Background": str,
        "Axis": str,
        "Subaxis": str,
        "Value": str,
        "Rule-of-Thumb": str,
        "Story": str,
        "Explanation": str,
        "Gold Label": str,
    },
    "global_mmlu_lite_en": {
        **{k: str for k in ("sample_id", "subject", "subject_category", "question", "answer")},
        **{f"option_{x}": str for x in "abcd"},
        **{k: str for k in ("required_knowledge", "time_sensitive", "reference", "culture", "region", "country")},
        "cultural_sensitivity_label": str,
        "is_annotated": bool,
    },
}
# Questions per fixture (CulturalBench-Hard: 12 judgements = 3 questions of 4).
FIXTURE_QUESTIONS = {"culturalbench_easy": 8, "culturalbench_hard": 3, "blend_mcq": 6, "normad": 6}
FIXTURE_QUESTIONS["global_mmlu_lite_en"] = 6
LETTERS = ["A", "B", "C", "D"]


def fixture(task: str) -> str:
    return str(FIXTURES_DIR / f"{task}.jsonl")


def rows(task: str) -> list[dict]:
    return [json.loads(line) for line in open(fixture(task), encoding="utf-8")]


@pytest.fixture(scope="module")
def manager():
    return task_manager()


@pytest.mark.parametrize("task", BENCHMARK_TASKS)
def test_fixture_rows_have_exactly_the_hub_fields_and_types(task):
    for row in rows(task):
        assert set(row) == set(HUB_FIELDS[task]), task
        for name, kind in HUB_FIELDS[task].items():
            assert type(row[name]) is kind, (task, name, row[name])
        if task == "blend_mcq":
            assert (
                sorted(json.loads(row["choices"])) == LETTERS and sorted(json.loads(row["choice_countries"])) == LETTERS
            )


@pytest.mark.parametrize("task", BENCHMARK_TASKS)
def test_every_fixture_row_renders_its_question_the_benchmark_choices_and_the_gold(task, manager):
    """The prompt holds the question (and every option next to its letter); the gold index points at the gold answer
    read straight from the raw row, so an off-by-one field or index fails here."""
    lm_task = build_task(manager, task, fixture(task))
    docs, raw = list(lm_task.test_docs()), rows(task)
    assert len(docs) == len(raw)  # no row dropped
    for doc, row in zip(docs, raw, strict=True):
        text, choices, gold = lm_task.doc_to_text(doc), lm_task.doc_to_choice(doc), lm_task.doc_to_target(doc)
        if task in ("culturalbench_easy", "global_mmlu_lite_en"):
            question, option = (
                ("prompt_question", "prompt_option_") if task == "culturalbench_easy" else ("question", "option_")
            )
            assert row[question] in text and choices == LETTERS and choices[gold] == row["answer"]
            for letter in LETTERS:
                assert f"{letter}. {row[option + letter.lower()]}" in text
        elif task == "culturalbench_hard":
            assert row["prompt_question"] in text and row["prompt_option"] in text
            assert choices == ["False", "True"] and choices[gold] == str(row["answer"])
        elif task == "blend_mcq":
            options = json.loads(row["choices"])
            assert row["prompt"].split(" Without any explanation")[0] in text and "JSON" not in text
            assert choices == LETTERS and choices[gold] == row["answer_idx"]
            for letter in LETTERS:
                assert f"{letter}. {options[letter]}" in text
        else:  # normad, country-only context: the rule of thumb and the value stay out of the prompt
            assert row["Story"] in text and row["Country"].replace("_", " ").title() in text
            assert row["Rule-of-Thumb"] not in text and row["Value"] not in text
            assert choices == ["Yes", "No", "Neither"]
            assert {"Yes": "yes", "No": "no", "Neither": "neutral"}[choices[gold]] == row["Gold Label"]


def test_missing_local_file_or_field_is_one_line_naming_task_file_and_field(manager, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(BenchmarkInputError) as err:
        task_config(manager, "normad", str(missing))
    assert str(err.value) == f"normad: {missing}: field '<file>': file not found (benchmarks.data.normad)"
    broken = tmp_path / "easy.jsonl"
    lines = open(fixture("culturalbench_easy"), encoding="utf-8").read().splitlines()
    row = json.loads(lines[2])
    del row["country"]
    lines[2] = json.dumps(row)
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchmarkInputError) as err:
        task_config(manager, "culturalbench_easy", str(broken))
    assert str(err.value) == f"culturalbench_easy: {broken}:3: field 'country': missing or empty"
    with pytest.raises(ValueError, match=r"config: benchmarks: unknown key\(s\) \['limt'\]"):
        EvalConfig(models=[{"name": "m", "model": "m"}], judges={"default": {"model": "j"}}, benchmarks={"limt": 3})
    with pytest.raises(ValueError, match=r"benchmarks: unknown task\(s\) \['mmlu'\]"):
        EvalConfig(
            models=[{"name": "m", "model": "m"}], judges={"default": {"model": "j"}}, benchmarks={"tasks": ["mmlu"]}
        )


@pytest.fixture(scope="module")
def route(tiny_models, tmp_path_factory):
    """add_benchmarks over base and base + a random (non-zero) LoRA adapter, every task on its fixture."""
    from peft import LoraConfig, get_peft_model

    base = str(tiny_models["tiny-qwen3"])
    adapter = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(0)
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(adapter)
    cfg = EvalConfig(
        report_to="none",
        dtype="float32",
        chat_template_kwargs={"enable_thinking": False},
        models=[{"name": "base", "model": base}, {"name": "tuned", "model": base, "adapter": str(adapter)}],
        judges={"default": {"model": base}},
        benchmarks={"batch_size": 16, "data": {task: fixture(task) for task in BENCHMARK_TASKS}},
    )
    results = {
        "models": [{"name": n, "stand_in": True} for n in ("base", "tuned")],
        "metrics": {"base": {}, "tuned": {}},
        "samples": {"base": [], "tuned": []},
        "comparisons": [{"baseline": "base", "tuned": "tuned"}],
    }
    add_benchmarks(results, cfg)
    return results, cfg


def test_config_route_reports_every_task_with_n_breakdowns_and_paired_changes(route):
    results, _ = route
    for name in ("base", "tuned"):
        bench = results["metrics"][name]["benchmarks"]
        assert sorted(bench) == sorted(BENCHMARK_TASKS)
        for task, m in bench.items():
            assert m["n"] == FIXTURE_QUESTIONS[task] and 0 <= m["accuracy"] <= 100 and m["stderr"] >= 0, task
            lm_acc = m["breakdown"]["lm_eval"]["question_acc" if task == "culturalbench_hard" else "acc"]
            assert m["accuracy"] == pytest.approx(100 * lm_acc)  # our per-question count agrees with lm-eval's
        for task in ("culturalbench_easy", "culturalbench_hard", "blend_mcq", "normad"):
            field = "Country" if task == "normad" else "country"
            expected = {}
            for row in rows(task):
                expected[row[field]] = expected.get(row[field], 0) + 1
            if task == "culturalbench_hard":  # per question, not per judgement
                expected = {c: n // 4 for c, n in expected.items()}
            assert {c: v["n"] for c, v in bench[task]["breakdown"]["per_country"].items()} == expected
        assert {k: v["n"] for k, v in bench["normad"]["breakdown"]["per_label"].items()} == {
            "yes": 3,
            "no": 2,
            "neutral": 1,
        }
        gm = bench["global_mmlu_lite_en"]["breakdown"]
        assert gm["culturally_sensitive"]["n"] == gm["culturally_agnostic"]["n"] == 3
        assert gm["gap_sensitive_minus_agnostic"] == pytest.approx(
            gm["culturally_sensitive"]["accuracy"] - gm["culturally_agnostic"]["accuracy"]
        )
        assert bench["culturalbench_hard"]["breakdown"]["judgement_n"] == 12
    changes = results["comparisons"][0]["benchmarks"]
    for task in BENCHMARK_TASKS:
        delta = changes[task]
        assert delta["n"] == FIXTURE_QUESTIONS[task] and delta["too_few"]  # fixtures: fewer than 10 questions
        b, t = (results["metrics"][m]["benchmarks"][task]["accuracy"] for m in ("base", "tuned"))
        assert delta["delta"] == pytest.approx(t - b) and delta["ci_low"] <= delta["delta"] <= delta["ci_high"]
    assert set(changes["global_mmlu_lite_en"]["breakdown"]) == {"culturally_sensitive", "culturally_agnostic"}
    questions = [s for s in results["samples"]["base"] if s["set"] == "benchmark/normad"]
    assert [s["id"] for s in questions] == [str(r["ID"]) for r in rows("normad")]
    assert results["benchmarks"]["sources"]["normad"] == {"local": fixture("normad")}


def test_accuracy_is_the_share_of_rows_whose_gold_choice_has_the_highest_loglikelihood(route, tiny_models):
    """CulturalBench-Easy recomputed with transformers: the chat-templated prompt, each letter's summed log-prob."""
    results, _ = route
    path = tiny_models["tiny-qwen3"]
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    from eval.lm_eval_tasks.utils import culturalbench_easy_text

    predictions, golds = [], []
    for row in rows("culturalbench_easy"):
        chat = [{"role": "user", "content": culturalbench_easy_text(row)}]
        context = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, enable_thinking=False)
        stripped = context.rstrip()  # lm-eval moves the context's trailing whitespace into the continuation
        scores = []
        for letter in LETTERS:
            whole = tokenizer(stripped + context[len(stripped) :] + letter, add_special_tokens=False)["input_ids"]
            n_context = len(tokenizer(stripped, add_special_tokens=False)["input_ids"])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(torch.tensor([whole[:-1]])).logits[0].float(), dim=-1)
            scores.append(sum(logprobs[i - 1, whole[i]].item() for i in range(n_context, len(whole))))
        predictions.append(max(range(4), key=scores.__getitem__))
        golds.append(LETTERS.index(row["answer"]))
    right = [float(p == g) for p, g in zip(predictions, golds, strict=True)]
    reported = [s["correct"] for s in results["samples"]["base"] if s["set"] == "benchmark/culturalbench_easy"]
    assert reported == right  # question by question, in fixture order
    accuracy = results["metrics"]["base"]["benchmarks"]["culturalbench_easy"]["accuracy"]
    assert accuracy == pytest.approx(100 * sum(right) / len(right))
    shifted = [float(p == (g + 1) % 4) for p, g in zip(predictions, golds, strict=True)]
    assert shifted != right  # the fixture tells gold indices apart: an off-by-one gold changes the outcomes


def test_report_section_has_a_row_per_benchmark_and_the_plot(route, tmp_path):
    results, _ = route
    lines = report_benchmarks.section_lines(results)
    table = [line for line in lines if line.startswith("| ")]
    titles = [line.split(" | ")[0].lstrip("| ").strip() for line in table[1:]]
    assert titles == [
        "CulturalBench-Easy",
        "CulturalBench-Hard (questions)",
        "judgements",
        "BLEnD MCQ",
        "NormAd (country context)",
        "Global-MMLU-Lite en",
        "culturally sensitive",
        "culturally agnostic",
        "gap CS − CA (pp)",
    ]
    assert report_benchmarks.write_plot(results, tmp_path) == "benchmarks.png"
    assert (tmp_path / "benchmarks.png").stat().st_size > 10_000
    payload = report_benchmarks.wandb_payload(results, tmp_path)
    assert len(payload["benchmarks_table"].data) == len(titles) and "benchmarks" in payload
    assert (
        payload["tuned/benchmarks/normad/accuracy"] == results["metrics"]["tuned"]["benchmarks"]["normad"]["accuracy"]
    )


def test_exported_questions_are_what_the_contamination_stage_reads(tmp_path):
    out = tmp_path / "benchmark_questions.jsonl"
    spec = BenchmarksSpec(data={task: fixture(task) for task in BENCHMARK_TASKS})
    counts = export_questions(spec, str(out))
    # CulturalBench-Hard asks the Easy questions again: only its third question (Mexico) is new text.
    assert counts == {**FIXTURE_QUESTIONS, "culturalbench_hard": 1}
    prompts = load_eval_prompts([str(out)])
    assert len(prompts) == sum(counts.values()) and rows("normad")[1]["Story"] in prompts
    train = Dataset.from_dict(
        {"id": ["keep", "leak"], "prompt": ["How do people greet in Portugal?", rows("normad")[1]["Story"]]}
    )
    kept, stats = remove_contaminated(train, prompts, DedupConfig())
    assert kept["id"] == ["keep"] and stats["removed"] == 1


def test_demo_and_real_configs_carry_the_benchmarks_block():
    from eval.config import parse_config
    from tests.conftest import REPO_ROOT

    demo = parse_config(["--config", str(REPO_ROOT / "configs/eval/demo.yaml")]).benchmark_spec
    assert demo.tasks == list(BENCHMARK_TASKS) and demo.limit and set(demo.data) == set(BENCHMARK_TASKS)
    for name in ("qwen3-8b", "qwen3-8b_qlora", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-7b_qlora"):
        spec = parse_config(["--config", str(REPO_ROOT / f"configs/eval/{name}.yaml")]).benchmark_spec
        assert spec.tasks == list(BENCHMARK_TASKS) and spec.limit is None and spec.data == {}


def test_models_reach_lm_eval_with_the_runs_dtype_chat_template_and_adapter():
    from eval.benchmarks import lm_eval_model

    cfg = EvalConfig(
        dtype="bfloat16",
        chat_template_kwargs={"enable_thinking": False},
        models=[
            {"name": "base", "model": "Qwen/Qwen3-8B"},
            {"name": "dpo", "model": "Qwen/Qwen3-8B", "adapter": "runs/qwen3-8b/dpo_lora"},
            {"name": "served", "model": "qwen3", "backend": "openai", "base_url": "http://127.0.0.1:8000/v1"},
        ],
        judges={"default": {"model": "j"}},
        benchmarks={"tasks": ["normad"]},
    )
    name, args = lm_eval_model(cfg, cfg.model_specs[1], {})
    assert name == "hf" and args["peft"] == "runs/qwen3-8b/dpo_lora" and args["dtype"] == "bfloat16"
    assert args["chat_template_args"] == {"enable_thinking": False} and args["pretrained"] == "Qwen/Qwen3-8B"
    assert "peft" not in lm_eval_model(cfg, cfg.model_specs[0], {})[1]
    assert lm_eval_model(cfg, cfg.model_specs[2], {}) is None  # an API model gives no token log-likelihoods


def test_a_hub_row_with_an_empty_field_is_dropped_counted_and_its_hard_question_left_incomplete(caplog):
    """Hub data is not ours to fix: an empty field drops the row with a warning naming task and field; the Hard
    question that lost a judgement keeps its four-judgement count, so it is never scored as if it had three."""
    from eval.benchmarks import question_outcomes
    from eval.lm_eval_tasks.utils import process_culturalbench_hard

    hub = rows("culturalbench_hard")
    hub[5]["prompt_option"] = ""  # question 1's second judgement
    with caplog.at_level("WARNING"):
        docs = list(process_culturalbench_hard(Dataset.from_list(hub)))
    assert "culturalbench_hard: dropped 1 row(s) with a missing or empty field: {'prompt_option': 1}" in caplog.text
    assert len(docs) == 11 and {d["n_judgements"] for d in docs} == {4}
    samples = [
        {
            "doc": d,
            "acc": 1.0,
            "filtered_resps": [(-2.0, False), (-1.0, False)],
            "arguments": [("", "False"), ("", "True")],
        }
        for d in docs
    ]
    records, extra = question_outcomes("culturalbench_hard", samples)
    assert [r["key"] for r in records] == ["0", "2"] and [r["response"] for r in records][
        0
    ] == "True / True / True / True"
    assert extra == {"judgement_accuracy": 100.0, "judgement_n": 11, "incomplete_questions": 1}
