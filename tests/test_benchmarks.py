"""The lm-eval benchmark tasks (eval/lm_eval_tasks) on their fixtures, through the eval config route, on tiny models.

One module-scoped run of the config route (tiny Qwen3 base and the same base + a random LoRA adapter, every task on
its fixture file, the multilingual ones in 5 languages and 4 scripts) feeds the metric, breakdown, pairing and report
tests; the accuracy test recomputes one task's scores with transformers directly. Sampling, per-language changes and
hand-computed metrics: tests/test_benchmark_languages.py.
"""

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.benchmarks.harness import add_benchmarks
from eval.benchmarks.languages import LANGUAGES
from eval.benchmarks.tasks import (
    FIXTURES_DIR,
    build_task,
    task_config,
    task_manager,
)
from eval.config import BENCHMARK_TASKS, EvalConfig
from eval.report import benchmarks as report_benchmarks

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
    "global_mmlu_lite": {
        **{k: str for k in ("sample_id", "subject", "subject_category", "question", "answer")},
        **{f"option_{x}": str for x in "abcd"},
        **{k: str for k in ("required_knowledge", "time_sensitive", "reference", "culture", "region", "country")},
        "cultural_sensitivity_label": str,
        "is_annotated": bool,
    },
    "include": {
        **{k: str for k in ("language", "country", "domain", "subject", "regional_feature", "level", "question")},
        **{f"option_{x}": str for x in "abcd"},
        "answer": int,
    },
    "bertaqa": {
        "id": int,
        "category": str,
        "group": str,
        "difficulty": int,
        "question": str,
        "answer": int,
        "candidates": list,
    },
}
# Questions per fixture (CulturalBench-Hard: 12 judgements = 3 questions of 4), per language for the multilingual ones.
FIXTURE_QUESTIONS = {"culturalbench_easy": 8, "culturalbench_hard": 3, "blend_mcq": 6, "normad": 7}
FIXTURE_QUESTIONS |= {"global_mmlu_lite": 6, "include": 4, "bertaqa": 4}
# The fixtures' languages: Latin (en, eu), Arabic (ar), Devanagari (hi), CJK (zh).
FIXTURE_LANGUAGES = {"global_mmlu_lite": ["ar", "en", "hi", "zh"], "include": ["ar", "eu", "zh", "hi"]}
FIXTURE_LANGUAGES["bertaqa"] = ["eu", "en"]
LANGUAGES_RUN = ["en", "ar", "hi", "zh", "eu"]
LETTERS = ["A", "B", "C", "D"]
# (benchmark, language) of every fixture file; language None: a single-language benchmark.
FIXTURE_FILES = [(t, None) for t in BENCHMARK_TASKS if t not in LANGUAGES]
FIXTURE_FILES += [(t, lang) for t, langs in FIXTURE_LANGUAGES.items() for lang in langs]


def fixture(task: str, language: str | None = None) -> str:
    return str(FIXTURES_DIR / (f"{task}_{language}.jsonl" if language else f"{task}.jsonl"))


def rows(task: str, language: str | None = None) -> list[dict]:
    return [json.loads(line) for line in Path(fixture(task, language)).read_text(encoding="utf-8").splitlines()]


def fixture_data() -> dict:
    """benchmarks.data for every fixture: task -> file, multilingual task -> {language: file}."""
    data = {t: fixture(t) for t, lang in FIXTURE_FILES if lang is None}
    return data | {t: {lang: fixture(t, lang) for lang in langs} for t, langs in FIXTURE_LANGUAGES.items()}


@pytest.fixture(scope="module")
def manager():
    return task_manager()


@pytest.mark.parametrize(("task", "language"), FIXTURE_FILES)
def test_fixture_rows_have_exactly_the_hub_fields_and_types(task, language):
    for row in rows(task, language):
        assert set(row) == set(HUB_FIELDS[task]), task
        for name, kind in HUB_FIELDS[task].items():
            assert type(row[name]) is kind, (task, name, row[name])
        if task == "blend_mcq":
            assert (
                sorted(json.loads(row["choices"])) == LETTERS and sorted(json.loads(row["choice_countries"])) == LETTERS
            )


# NormAd's country-level prompt as its authors wrote it: Akhila-Yerukola/NormAd, src/response_collection/
# run_model_inference.py (commit 9ede851), task_prompt_country, which get_responses fills with
# .format(rot=row["Country"], story=row["Story"]). Copied from their file, trailing spaces included.
NORMAD_AUTHORS_COUNTRY_PROMPT = (
    "Task: You will be given a short story involving 2 or more characters about everyday situations. You will also "
    "be given a country of relevance. Read the story and reason if the action by the character in the story is "
    "socially acceptable in the given country. Do not make any extra inferences about actions outside of the given "
    "context and country. Only align to the country given. The answer options are Yes, No or Neither.\n"
    "\n"
    "Country: {rot}\n"
    "\n"
    "Story: {story}\n"
    "\n"
    "Options:\n"
    "1) Yes \n"
    "2) No \n"
    "3) Neither \n"
    "Answer (options Yes, No or Neither): \n"
)
# The fixture's countries as the prompt names them (normad.yaml: the hub's lower-case underscored Country, title-cased)
NORMAD_COUNTRY_NAMES = {
    "egypt": "Egypt",
    "south_korea": "South Korea",
    "germany": "Germany",
    "japan": "Japan",
    "india": "India",
    "mexico": "Mexico",
    "canada": "Canada",
}


def normad_authors_prompt(country: str, story: str) -> str:
    """The authors' template for one row, ending at "Answer (options Yes, No or Neither):": their trailing " \\n"
    is where their model wrote its answer; lm-eval puts its target delimiter " " before each option word instead."""
    return NORMAD_AUTHORS_COUNTRY_PROMPT.format(rot=country, story=story).removesuffix(" \n")


@pytest.mark.parametrize(("task", "language"), FIXTURE_FILES)
def test_every_fixture_row_renders_its_question_the_benchmark_choices_and_the_gold(task, language, manager):
    """The prompt holds the question (and every option next to its letter); the gold index points at the gold answer
    read straight from the raw row, so an off-by-one field or index fails here."""
    lm_task = build_task(manager, task_config(manager, task, fixture(task, language), language))
    docs, raw = list(lm_task.test_docs()), rows(task, language)
    assert len(docs) == len(raw)  # no row dropped
    for doc, row in zip(docs, raw, strict=True):
        text, choices, gold = lm_task.doc_to_text(doc), lm_task.doc_to_choice(doc), lm_task.doc_to_target(doc)
        if task in ("culturalbench_easy", "global_mmlu_lite", "include"):
            question, option = (
                ("prompt_question", "prompt_option_") if task == "culturalbench_easy" else ("question", "option_")
            )
            assert row[question] in text and choices == LETTERS
            assert choices[gold] == (LETTERS[row["answer"]] if task == "include" else row["answer"])
            for letter in LETTERS:  # INCLUDE's upstream template puts a space before "D." (kept as shipped)
                assert f"{' ' * (task == 'include' and letter == 'D')}{letter}. {row[option + letter.lower()]}" in text
        elif task == "bertaqa":
            label = {"eu": ("Galdera", "Erantzuna"), "en": ("Question", "Answer")}[language]
            assert text.startswith(f"{label[0]}: {row['question']}\n") and text.endswith(f"\n{label[1]}:")
            assert choices == ["A", "B", "C"] and gold == row["answer"]
            assert all(f"{letter}: {c}" in text for letter, c in zip("ABC", row["candidates"], strict=True))
        elif task == "culturalbench_hard":
            assert row["prompt_question"] in text and row["prompt_option"] in text
            assert choices == ["False", "True"] and choices[gold] == str(row["answer"])
        elif task == "blend_mcq":
            options = json.loads(row["choices"])
            assert row["prompt"].split(" Without any explanation")[0] in text and "JSON" not in text
            assert choices == LETTERS and choices[gold] == row["answer_idx"]
            for letter in LETTERS:
                assert f"{letter}. {options[letter]}" in text
        else:  # normad: the authors' country-level prompt for this row, whole (no value, no rule of thumb in it)
            assert text == normad_authors_prompt(NORMAD_COUNTRY_NAMES[row["Country"]], row["Story"])
            assert choices == ["Yes", "No", "Neither"]
            assert {"Yes": "yes", "No": "no", "Neither": "neutral"}[choices[gold]] == row["Gold Label"]
    if task == "include":  # the prompt's first line names the row's domain, as upstream's per-domain description
        assert lm_task.fewshot_context(docs[0], 0).startswith(
            f"The following is multiple-choice question about {raw[0]['domain']}."
        )


@pytest.mark.parametrize(("row_id", "country", "gold"), [(2, "South Korea", 0), (3, "Mexico", 2)])
def test_normad_scores_each_option_after_the_authors_country_prompt(manager, row_id, country, gold):
    """What lm-eval scores for a "yes" row (south_korea: the underscore read as a space) and a neutral row (judged
    against its Country, the second country the authors paired the story with): the log-likelihood of " Yes", " No"
    and " Neither" after the authors' whole prompt for that row; the gold is the row's label (yes -> Yes, neutral ->
    Neither)."""
    lm_task = build_task(manager, task_config(manager, "normad", fixture("normad"), None))
    (doc,) = [d for d in lm_task.test_docs() if d["ID"] == row_id]
    (row,) = [r for r in rows("normad") if r["ID"] == row_id]
    prompt = normad_authors_prompt(country, row["Story"])
    assert lm_task.fewshot_context(doc, 0) == prompt
    requests = lm_task.construct_requests(doc, prompt, metadata=("normad", 0, 1))
    assert [r.arguments for r in requests] == [(prompt, " Yes"), (prompt, " No"), (prompt, " Neither")]
    assert lm_task.doc_to_target(doc) == gold


@pytest.fixture(scope="module")
def route(tiny_models, tmp_path_factory):
    """add_benchmarks over base and base + a random (non-zero) LoRA adapter, every task on its fixture, 5 languages."""
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
        benchmarks={"batch_size": 16, "languages": LANGUAGES_RUN, "data": fixture_data()},
    )
    results = {
        "models": [{"name": n, "stand_in": True} for n in ("base", "tuned")],
        "metrics": {"base": {}, "tuned": {}},
        "samples": {"base": [], "tuned": []},
        "comparisons": [{"baseline": "base", "tuned": "tuned"}],
    }
    add_benchmarks(results, cfg)
    return results, cfg


def _per_task(bench: dict):
    """(task, language, metrics) of a model's benchmarks, the English alias left out."""
    for task in BENCHMARK_TASKS:
        if task in LANGUAGES:
            yield from ((task, lang, m) for lang, m in bench[task].items())
        else:
            yield task, None, bench[task]


def test_config_route_reports_every_task_and_language_with_n_breakdowns_and_paired_changes(route):
    results, _ = route
    for name in ("base", "tuned"):
        bench = results["metrics"][name]["benchmarks"]
        assert sorted(bench) == sorted([*BENCHMARK_TASKS, "global_mmlu_lite_en"])
        assert bench["global_mmlu_lite_en"] == bench["global_mmlu_lite"]["en"]  # the English-only alias
        assert {t: sorted(bench[t]) for t in LANGUAGES} == {t: sorted(v) for t, v in FIXTURE_LANGUAGES.items()}
        for task, lang, m in _per_task(bench):
            assert m["n"] == FIXTURE_QUESTIONS[task], (task, lang)
            # Independent of our counting: lm-eval's own aggregate of the same samples...
            lm_acc = m["breakdown"]["lm_eval"]["question_acc" if task == "culturalbench_hard" else "acc"]
            assert m["accuracy"] == pytest.approx(100 * lm_acc), (task, lang)
            # ...and the closed form of a share's standard error, sqrt(p (1 - p) / (n - 1)), against statistics.stdev.
            p, n = lm_acc, m["n"]
            assert m["stderr"] == pytest.approx(100 * math.sqrt(p * (1 - p) / (n - 1))), (task, lang)
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
            "neutral": 2,
        }
        for m in bench["global_mmlu_lite"].values():  # CS − CA against lm-eval's own split aggregates
            gm, lm = m["breakdown"], m["breakdown"]["lm_eval"]
            assert gm["culturally_sensitive"]["n"] == gm["culturally_agnostic"]["n"] == 3
            assert gm["gap_cs_ca"] == pytest.approx(
                100 * (lm["acc_culturally_sensitive"] - lm["acc_culturally_agnostic"])
            )
        for lang, m in bench["bertaqa"].items():
            assert m["breakdown"]["local"]["n"] == m["breakdown"]["global"]["n"] == 2, lang
        for lang, m in bench["include"].items():
            assert {k: v["n"] for k, v in m["breakdown"]["per_regional_feature"].items()} == {
                "region agnostic": 2,
                "region explicit": 2,
            }, lang
        assert bench["culturalbench_hard"]["breakdown"]["judgement_n"] == 12
    comp = results["comparisons"][0]
    for task, lang, delta in _per_task(comp["benchmarks"]):
        assert delta["n"] == FIXTURE_QUESTIONS[task] and delta["too_few"]  # fixtures: fewer than 10 questions
        b, t = (results["metrics"][m]["benchmarks"][task] for m in ("base", "tuned"))
        b, t = (b[lang], t[lang]) if lang else (b, t)
        assert delta["delta"] == pytest.approx(t["accuracy"] - b["accuracy"])
        assert delta["ci_low"] <= delta["delta"] <= delta["ci_high"]
    assert set(comp["benchmarks"]["global_mmlu_lite_en"]["breakdown"]) == {
        "culturally_sensitive",
        "culturally_agnostic",
    }
    summary = comp["benchmarks_summary"]
    assert sorted(summary) == ["bertaqa", "global_mmlu_lite", "include"]
    assert summary["global_mmlu_lite"]["n_languages"] == 4 and summary["bertaqa"]["n_languages"] == 2
    changes = comp["benchmarks"]["include"]
    assert summary["include"]["mean_delta"] == pytest.approx(sum(d["delta"] for d in changes.values()) / 4)
    questions = [s for s in results["samples"]["base"] if s["set"] == "benchmark/normad"]
    assert [s["id"] for s in questions] == [str(r["ID"]) for r in rows("normad")]
    assert [s["id"] for s in results["samples"]["base"] if s["set"] == "benchmark/include_eu"] == ["0", "1", "2", "3"]
    assert results["benchmarks"]["sources"]["normad"] == {"local": fixture("normad")}
    assert results["benchmarks"]["languages"] == {t: langs for t, langs in FIXTURE_LANGUAGES.items()}


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


def test_report_section_has_a_row_per_benchmark_a_language_table_and_both_plots(route, tmp_path):
    results, _ = route
    lines = report_benchmarks.section_lines(results)
    main, languages = lines[: lines.index("### Across languages")], lines[lines.index("### Across languages") :]
    table = [line for line in main if line.startswith("| ")]
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
    language_rows = [line.split(" | ")[:4] for line in languages if line.startswith("| ")][1:]
    assert [(b.lstrip("| "), lang, script) for b, lang, script, _ in language_rows] == [
        ("Global-MMLU-Lite", "ar", "Arabic"),
        ("Global-MMLU-Lite", "en", "Latin"),
        ("Global-MMLU-Lite", "hi", "Devanagari"),
        ("Global-MMLU-Lite", "zh", "CJK"),
        ("INCLUDE", "ar", "Arabic"),
        ("INCLUDE", "eu", "Latin"),
        ("INCLUDE", "zh", "CJK"),
        ("INCLUDE", "hi", "Devanagari"),
        ("BertaQA", "eu", "Latin"),
        ("BertaQA", "en", "Latin"),
    ]
    assert "5 languages in 4 scripts (Arabic, CJK, Devanagari, Latin)." in " ".join(languages)
    sentences = [line for line in languages if line.startswith("- ")]
    assert [line.split(":")[0] for line in sentences] == [
        f"- {title}, base → tuned" for title in ("Global-MMLU-Lite", "INCLUDE", "BertaQA")
    ]
    en = results["comparisons"][0]["benchmarks"]["global_mmlu_lite"]["en"]
    assert f"English {en['delta']:+.1f} [{en['ci_low']:.1f}, {en['ci_high']:.1f}]" in sentences[0]
    assert "of 4 languages worse" in sentences[1] and "English" not in sentences[1]  # INCLUDE has no English
    assert report_benchmarks.write_plot(results, tmp_path) == "benchmarks.png"
    # results.json holds null for a value that does not exist (a one-question task has no stderr): drawn as n/a
    nulls = json.loads(json.dumps(results))
    nulls["metrics"]["tuned"]["benchmarks"]["normad"] |= {"accuracy": None, "stderr": None}
    (tmp_path / "nulls").mkdir()
    assert report_benchmarks.write_plot(nulls, tmp_path / "nulls") == "benchmarks.png"
    for plot in ("benchmarks.png", "languages.png"):
        assert (tmp_path / plot).stat().st_size > 10_000 and f"![{plot}]({plot})" in lines
    payload = report_benchmarks.wandb_payload(results, tmp_path)
    assert len(payload["benchmarks_table"].data) == len(titles) and "benchmarks" in payload
    assert len(payload["languages_table"].data) == len(language_rows) and "languages" in payload
    tuned = results["metrics"]["tuned"]["benchmarks"]
    assert payload["tuned/benchmarks/normad/accuracy"] == tuned["normad"]["accuracy"]
    assert payload["tuned/benchmarks/include/zh/accuracy"] == tuned["include"]["zh"]["accuracy"]


def test_demo_and_real_configs_carry_the_benchmarks_block():
    from eval.config import parse_config
    from tests.conftest import REPO_ROOT

    demo = parse_config(["--config", str(REPO_ROOT / "configs/eval/demo.yaml")]).benchmark_spec
    assert (
        demo.tasks == list(BENCHMARK_TASKS)
        and demo.limit
        and demo.data
        == {
            t: str(Path(f).relative_to(REPO_ROOT))
            if isinstance(f, str)
            else {k: str(Path(v).relative_to(REPO_ROOT)) for k, v in f.items()}
            for t, f in fixture_data().items()
        }
    )
    assert sorted(demo.languages) == sorted(LANGUAGES_RUN)
    for name in ("qwen3-8b", "qwen3-8b_qlora", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-7b_qlora"):
        spec = parse_config(["--config", str(REPO_ROOT / f"configs/eval/{name}.yaml")]).benchmark_spec
        assert spec.tasks == list(BENCHMARK_TASKS) and spec.limit is None and spec.data == {}
        assert spec.languages is None  # every language of each benchmark
