"""Benchmark scoring without a model: hand-computed metrics and summaries, the seeded stratified `limit`, question ids
checked unique, per-language changes confined to their language, config and input errors, and lm-eval's model args.

The numbers each test expects are worked out by hand in its comments (or come from the fixtures' own rows), so a
broken formula (a flipped gap, a population instead of a sample standard deviation, a first-N cut) fails them.
"""

import json
import math
from pathlib import Path

import pytest
from datasets import Dataset

from core.sampling import allocate
from data_pipeline.dedup import DedupConfig, remove_contaminated
from data_pipeline.pipeline import load_eval_prompts
from eval.benchmark_tasks import export_questions
from eval.benchmarks.harness import compare, nest
from eval.benchmarks.languages import summary
from eval.benchmarks.outcomes import question_outcomes, task_metrics
from eval.benchmarks.sample import plan_samples
from eval.benchmarks.tasks import (
    BenchmarkInputError,
    BenchmarkTask,
    benchmark_tasks,
    task_config,
    task_manager,
)
from eval.config import BenchmarksSpec, EvalConfig
from eval.report.languages import heatmap_cells, language_table, sentences
from tests.test_benchmarks import (
    FIXTURE_FILES,
    FIXTURE_QUESTIONS,
    fixture,
    fixture_data,
    rows,
)

LETTERS = ["A", "B", "C", "D"]


@pytest.fixture(scope="module")
def manager():
    return task_manager()


def sample(doc: dict, right: bool, choices: list[str] = LETTERS) -> dict:
    """An lm-eval logged sample whose gold (or, when wrong, the next) choice has the highest log-likelihood."""
    gold = LETTERS.index(doc["answer"]) if isinstance(doc["answer"], str) else doc["answer"]
    picked = gold if right else (gold + 1) % len(choices)
    scores = [(-1.0 if i == picked else -5.0, False) for i in range(len(choices))]
    return {"doc": doc, "acc": float(right), "filtered_resps": scores, "arguments": [("", c) for c in choices]}


def test_accuracy_stderr_and_the_cs_ca_gap_are_the_hand_computed_numbers():
    """Global-MMLU-Lite, 6 questions: CS right, right, wrong; CA right, wrong, wrong.
    accuracy = 3/6 = 50.0 %; stderr = stdev([1,1,0,1,0,0]) / sqrt(6) = sqrt(6 * 0.25 / 5) / sqrt(6) = 22.3607 %
    (a population stdev would give 20.4124); CS = 2/3 = 66.667, CA = 1/3 = 33.333, gap CS − CA = +33.333."""
    docs = rows("global_mmlu_lite", "en")  # labels CS, CS, CS, CA, CA, CA
    outcomes = [True, True, False, True, False, False]
    records, extra = question_outcomes("global_mmlu_lite", [sample(d, r) for d, r in zip(docs, outcomes, strict=True)])
    m = task_metrics("global_mmlu_lite", records, extra, {})
    assert (m["accuracy"], m["n"]) == (50.0, 6) and m["stderr"] == pytest.approx(22.36068, abs=1e-4)
    assert m["breakdown"]["culturally_sensitive"]["accuracy"] == pytest.approx(66.6667, abs=1e-3)
    assert m["breakdown"]["culturally_agnostic"]["accuracy"] == pytest.approx(33.3333, abs=1e-3)
    assert m["breakdown"]["gap_cs_ca"] == pytest.approx(33.3333, abs=1e-3)
    # golds A C B B D A; a wrong answer picks the next letter
    assert [r["response"] for r in records] == ["A", "C", "C", "B", "A", "B"]


def test_bertaqa_local_minus_global_gap_and_include_regional_split_are_the_hand_computed_numbers():
    """BertaQA eu: local (ids 0, 1) right, wrong; global (ids 2, 3) right, right -> local 50, global 100, gap −50.
    INCLUDE hi: region explicit right, right; region agnostic wrong, right -> 100.0 and 50.0."""
    docs = rows("bertaqa", "eu")
    records, _ = question_outcomes(
        "bertaqa", [sample(d, r, LETTERS[:3]) for d, r in zip(docs, [1, 0, 1, 1], strict=True)]
    )
    m = task_metrics("bertaqa", records, {}, {})
    assert (m["breakdown"]["local"]["accuracy"], m["breakdown"]["global"]["accuracy"]) == (50.0, 100.0)
    assert m["breakdown"]["gap_local_global"] == -50.0 and m["accuracy"] == 75.0
    docs = [row | {"row": i} for i, row in enumerate(rows("include", "hi"))]  # the id utils.process_include adds
    records, _ = question_outcomes("include", [sample(d, r) for d, r in zip(docs, [1, 1, 0, 1], strict=True)])
    split = task_metrics("include", records, {}, {})["breakdown"]["per_regional_feature"]
    assert split == {"region agnostic": {"accuracy": 50.0, "n": 2}, "region explicit": {"accuracy": 100.0, "n": 2}}


def test_summary_over_languages_is_the_hand_computed_one():
    """Defined changes ar −2, en +3, hi −4 (zh has none): mean (−2 + 3 − 4) / 3 = −1.0; worst hi −4.0; worse = the
    languages whose whole CI is below 0: ar only (hi's CI reaches +1)."""
    changes = {
        "ar": {"delta": -2.0, "ci_low": -5.0, "ci_high": -0.5, "n": 40},
        "en": {"delta": 3.0, "ci_low": 1.0, "ci_high": 5.0, "n": 40},
        "hi": {"delta": -4.0, "ci_low": -7.0, "ci_high": 1.0, "n": 40},
        "zh": {"delta": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0},
    }
    assert summary(changes) == {
        "mean_delta": -1.0,
        "worst_language": "hi",
        "worst_delta": -4.0,
        "languages_worse": 1,
        "n_languages": 3,
    }


def test_a_change_confined_to_one_languages_questions_shows_up_in_that_languages_cell_only():
    """Two models answer 30 parallel questions in four languages identically, except that the tuned one gets 12 of
    Hindi's culturally sensitive questions wrong that the base got right: −12/30 = −40.0 points in Hindi (CS: −12/15
    = −80.0), exactly 0 elsewhere; the summary, the language table, the sentence and the heatmap say so."""
    languages = ["ar", "en", "hi", "zh"]
    tasks = [BenchmarkTask("global_mmlu_lite", lang, f"global_mmlu_lite_{lang}", {}) for lang in languages]
    template = rows("global_mmlu_lite", "en")[0]
    docs = [
        template | {"sample_id": f"q/{i}", "cultural_sensitivity_label": "CS" if i < 15 else "CA"} for i in range(30)
    ]
    base_right = [i % 5 != 4 for i in range(30)]  # 24 right: 0-3, 5-8, 10-13, ... ; CS right ones: 12
    flipped = [i for i in range(15) if base_right[i]]  # Hindi's 12 CS questions the base got right
    assert len(flipped) == 12
    base, tuned, metrics = {}, {}, {"base": {}, "tuned": {}}
    for item in tasks:
        tuned_right = [r and not (item.language == "hi" and i in flipped) for i, r in enumerate(base_right)]
        for name, store, right in (("base", base, base_right), ("tuned", tuned, tuned_right)):
            store[item.name], extra = question_outcomes(
                item.benchmark, [sample(d, r) for d, r in zip(docs, right, strict=True)]
            )
            metrics[name][item.name] = task_metrics(item.benchmark, store[item.name], extra, {})
    changes, summaries = compare(tasks, base, tuned, resamples=1000, seed=0)
    per_language = changes["global_mmlu_lite"]
    assert per_language["hi"]["delta"] == -40.0 and per_language["hi"]["ci_high"] < 0
    assert per_language["hi"]["breakdown"]["culturally_sensitive"]["delta"] == -80.0
    assert per_language["hi"]["breakdown"]["culturally_agnostic"]["delta"] == 0.0
    for lang in ("ar", "en", "zh"):
        assert (per_language[lang]["delta"], per_language[lang]["ci_low"], per_language[lang]["ci_high"]) == (0, 0, 0)
    assert changes["global_mmlu_lite_en"] is per_language["en"]
    assert summaries["global_mmlu_lite"] == {
        "mean_delta": -10.0,
        "worst_language": "hi",
        "worst_delta": -40.0,
        "languages_worse": 1,
        "n_languages": 4,
    }
    results = {
        "benchmarks": {"tasks": ["global_mmlu_lite"]},
        "metrics": {name: {"benchmarks": nest(tasks, per_task)} for name, per_task in metrics.items()},
        "comparisons": [{"baseline": "base", "tuned": "tuned", "benchmarks": changes, "benchmarks_summary": summaries}],
        "models": [{"name": "base", "stand_in": True}, {"name": "tuned", "stand_in": True}],
    }
    cells = {lang: row[0]["delta"] for lang, row in zip(languages, heatmap_cells(results), strict=True)}
    assert cells == {"ar": 0.0, "en": 0.0, "hi": -40.0, "zh": 0.0}
    table = {line.split(" | ")[1]: line.split(" | ")[-1] for line in language_table(results)[2:]}
    assert [lang for lang, cell in table.items() if not cell.startswith("+0.0 [0.0, 0.0] n=30")] == ["hi"]
    assert table["hi"].startswith("-40.0 [")
    (sentence,) = sentences(results)
    assert sentence.startswith(
        "- Global-MMLU-Lite, base → tuned: English +0.0 [0.0, 0.0]; mean over 4 languages -10.0; "
    )
    assert "1 of 4 languages worse; worst: hi -40.0 [" in sentence


def test_allocation_is_the_largest_remainder_one():
    """4 over groups of 5, 3, 2: shares 2.0, 1.2, 0.8 -> floors 2, 1, 0, and the one left goes to the largest
    remainder (0.8): 2, 1, 1."""
    import random

    assert allocate({"a": 5, "b": 3, "c": 2}, 4, random.Random(0)) == {"a": 2, "b": 1, "c": 1}


def _plan(manager, limit, **data) -> tuple[list, dict]:
    languages = sorted({lang for files in data.values() if isinstance(files, dict) for lang in files}) or None
    spec = BenchmarksSpec(tasks=list(data), languages=languages, limit=limit, data=data)
    tasks = benchmark_tasks(spec, manager)
    return tasks, plan_samples(tasks, spec, seed=42, manager=manager)


def test_normad_fixture_has_neutral_rows_in_the_pinned_layout_and_the_labels_in_blocks():
    """The hub file's layout (normad.yaml): one country column, the country a row is judged against; neutral rows pair
    a story with another country's norm. Rows come grouped by label, so a first-N cut would hold one label only."""
    raw = rows("normad")
    assert [r["Gold Label"] for r in raw] == ["yes"] * 3 + ["no"] * 2 + ["neutral"] * 2
    assert "Other Country" not in raw[0] and all(r["Country"] == r["Country"].lower() for r in raw)
    neutral = [r for r in raw if r["Gold Label"] == "neutral"]
    assert [r["Country"] for r in neutral] == ["mexico", "canada"]  # the paired country, not the story's own
    assert all(r["Country"].replace("_", " ").title() not in r["Story"] for r in neutral)


def test_a_limit_draws_a_label_and_country_stratified_sample_never_the_first_rows(manager):
    """NormAd's fixture is in label blocks (yes×3, no×2, neutral×2), like the hub file: the first 3 rows are all
    "yes". limit 3 takes one per label; limit 5: shares 2.14 / 1.43 / 1.43 -> 2 yes and 3 split 2 + 1 between the
    other two (a seeded tie-break), every label present."""
    labels = [r["Gold Label"] for r in rows("normad")]
    _, samples = _plan(manager, 3, normad=fixture("normad"))
    assert sorted(labels[i] for i in samples["normad"]) == ["neutral", "no", "yes"]
    _, samples = _plan(manager, 5, normad=fixture("normad"))
    picked = [labels[i] for i in samples["normad"]]
    assert picked.count("yes") == 2 and sorted([picked.count("no"), picked.count("neutral")]) == [1, 2]
    assert _plan(manager, 5, normad=fixture("normad"))[1] == samples  # seeded: the same sample every run
    _, whole = _plan(manager, 7, normad=fixture("normad"))
    assert whole == {}  # a limit at or above the task's size scores every question


def test_parallel_languages_get_the_same_questions_and_a_hard_question_is_sampled_whole(manager):
    files = {lang: fixture("global_mmlu_lite", lang) for lang in ("en", "ar", "zh")}
    limit = {"global_mmlu_lite": 4, "culturalbench_hard": 2}  # per benchmark
    tasks, samples = _plan(manager, limit, global_mmlu_lite=files, culturalbench_hard=fixture("culturalbench_hard"))
    ids = {
        item.name: [rows("global_mmlu_lite", item.language)[i]["sample_id"] for i in samples[item.name]]
        for item in tasks
        if item.language
    }
    assert ids["global_mmlu_lite_en"] == ids["global_mmlu_lite_ar"] == ids["global_mmlu_lite_zh"]
    labels = [rows("global_mmlu_lite", "en")[i]["cultural_sensitivity_label"] for i in samples["global_mmlu_lite_en"]]
    assert sorted(labels) == ["CA", "CA", "CS", "CS"]  # 4 of 3 CS + 3 CA: 2 each
    hard = rows("culturalbench_hard")
    questions = [hard[i]["question_idx"] for i in samples["culturalbench_hard"]]
    assert len(questions) == 8 and all(questions.count(q) == 4 for q in set(questions))  # 2 whole questions of 3


def test_a_repeated_question_id_is_one_line_naming_task_field_and_id(manager, tmp_path):
    copy = tmp_path / "global_mmlu_lite_en.jsonl"
    lines = Path(fixture("global_mmlu_lite", "en")).read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[3])
    row["sample_id"] = json.loads(lines[0])["sample_id"]
    lines[3] = json.dumps(row)
    copy.write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchmarkInputError) as err:
        _plan(manager, None, global_mmlu_lite={"en": str(copy)})
    assert str(err.value) == (
        "global_mmlu_lite_en: question id sample_id='high_school_geography/test/12' appears 2 times (1 id(s) "
        "repeated); outcomes are paired by it, so each question needs its own id"
    )


def test_missing_local_file_or_field_is_one_line_naming_task_file_and_field(manager, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(BenchmarkInputError) as err:
        task_config(manager, "normad", str(missing))
    assert str(err.value) == f"normad: {missing}: field '<file>': file not found (benchmarks.data.normad)"
    with pytest.raises(BenchmarkInputError) as err:
        task_config(manager, "include", str(missing), "hi")
    assert str(err.value) == f"include_hi: {missing}: field '<file>': file not found (benchmarks.data.include.hi)"
    broken = tmp_path / "easy.jsonl"
    lines = Path(fixture("culturalbench_easy")).read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[2])
    del row["country"]
    lines[2] = json.dumps(row)
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchmarkInputError) as err:
        task_config(manager, "culturalbench_easy", str(broken))
    assert str(err.value) == f"culturalbench_easy: {broken}:3: field 'country': missing or empty"


@pytest.mark.parametrize(
    ("benchmarks", "message"),
    [
        ({"limt": 3}, r"config: benchmarks: unknown key\(s\) \['limt'\]"),
        ({"tasks": ["mmlu"]}, r"benchmarks: unknown task\(s\) \['mmlu'\]"),
        ({"tasks": ["global_mmlu_lite_en"]}, r"global_mmlu_lite_en is now global_mmlu_lite with languages: \[en\]"),
        ({"languages": ["xx"]}, r"benchmarks.languages: \['xx'\] not a language of"),
        (
            {"tasks": ["bertaqa"], "languages": ["yo"]},
            r"benchmarks.languages: \['yo'\] not a language of \['bertaqa'\]",
        ),
        (
            {"tasks": ["bertaqa", "include"], "languages": ["ar"]},
            r"leaves bertaqa no language \(it has \['eu', 'en'\]\)",
        ),
        (
            {"tasks": ["bertaqa"], "data": {"bertaqa": {"eu": "x.jsonl"}}},
            r"data.bertaqa: no file for language\(s\) \['en'\]",
        ),
        ({"tasks": ["bertaqa"], "data": {"bertaqa": "x.jsonl"}}, r"data.bertaqa: a mapping language -> file"),
        ({"limit": 0}, r"benchmarks.limit: a whole number >= 1 or null, got 0"),
        ({"limit": {"normad": True}}, r"benchmarks.limit.normad: a whole number >= 1 or null, got True"),
    ],
)
def test_a_bad_benchmarks_block_is_one_line_naming_the_key(benchmarks, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(models=[{"name": "m", "model": "m"}], judges={"default": {"model": "j"}}, benchmarks=benchmarks)


def test_models_reach_lm_eval_with_the_runs_dtype_chat_template_and_adapter():
    from eval.benchmarks.harness import lm_eval_model

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


def test_exported_questions_are_what_the_contamination_stage_reads(tmp_path):
    out = tmp_path / "benchmark_questions.jsonl"
    spec = BenchmarksSpec(languages=["en", "hi"], data=fixture_data())  # two languages keep it quick
    counts = export_questions(spec, str(out))
    # CulturalBench-Hard asks the Easy questions again: only its third question (Mexico) is new text; BertaQA's
    # English planet question is Global-MMLU-Lite's English one, word for word.
    expected = {t: FIXTURE_QUESTIONS[t] for t, lang in FIXTURE_FILES if lang is None} | {"culturalbench_hard": 1}
    ran = [(t, lang) for t, lang in FIXTURE_FILES if lang in ("en", "hi")]
    expected |= {f"{t}_{lang}": FIXTURE_QUESTIONS[t] for t, lang in ran} | {"bertaqa_en": 3}
    assert counts == expected
    prompts = load_eval_prompts([str(out)])
    assert len(prompts) == sum(counts.values()) and rows("normad")[1]["Story"] in prompts
    assert rows("global_mmlu_lite", "hi")[0]["question"] in prompts and rows("include", "hi")[0]["question"] in prompts
    train = Dataset.from_dict(
        {"id": ["keep", "leak"], "prompt": ["How do people greet in Portugal?", rows("normad")[1]["Story"]]}
    )
    kept, stats = remove_contaminated(train, prompts, DedupConfig())
    assert kept["id"] == ["keep"] and stats["removed"] == 1


def test_preflight_checks_every_local_file_of_every_language():
    from eval.preflight import local_benchmark_files

    data = {"normad": "n.jsonl", "global_mmlu_lite": {"en": "en.jsonl", "hi": {"test": "hi.jsonl", "dev": "dev.jsonl"}}}
    assert list(local_benchmark_files(data)) == [
        ("normad", "n.jsonl"),
        ("global_mmlu_lite.en", "en.jsonl"),
        ("global_mmlu_lite.hi.test", "hi.jsonl"),
        ("global_mmlu_lite.hi.dev", "dev.jsonl"),
    ]
