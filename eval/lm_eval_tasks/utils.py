"""Prompt, gold and scoring functions of the AlignCultura benchmark tasks (lm-evaluation-harness task YAMLs beside
this file; `lm_eval --include_path eval/lm_eval_tasks --tasks culturalbench_hard ...`).

Every task is scored by log-likelihood: the model's answer is the choice whose continuation has the highest summed
log-probability after the prompt (lm-eval's `acc`). Rows are the hub rows unchanged; `process_docs` only checks that
every field a task reads is present and non-empty (a row without one is dropped and counted in a warning naming the
task and field, never silently), and CulturalBench-Hard rows learn how many judgements their question has so that a
question is scored only when all of its judgements were (a `limit` can cut a question short).
"""

import json
import logging
from collections import Counter, defaultdict

log = logging.getLogger("aligncultura.lm_eval_tasks")

LETTERS = ("A", "B", "C", "D")
# Fields each task reads from a hub row (the local-copy check and the fixtures test use the same table).
REQUIRED_FIELDS = {
    "culturalbench_easy": (
        "question_idx",
        "prompt_question",
        "prompt_option_a",
        "prompt_option_b",
        "prompt_option_c",
        "prompt_option_d",
        "answer",
        "country",
    ),
    "culturalbench_hard": ("question_idx", "prompt_question", "prompt_option", "answer", "country"),
    "blend_mcq": ("MCQID", "country", "prompt", "choices", "answer_idx"),
    "normad": ("ID", "Country", "Story", "Gold Label"),
    "global_mmlu_lite": (
        "sample_id",
        "question",
        "option_a",
        "option_b",
        "option_c",
        "option_d",
        "answer",
        "cultural_sensitivity_label",
    ),
    "include": ("question", "option_a", "option_b", "option_c", "option_d", "answer", "domain", "regional_feature"),
    "bertaqa": ("id", "question", "candidates", "answer", "group"),
}
NORMAD_CHOICES = ("Yes", "No", "Neither")  # the paper's answer options; gold labels yes / no / neutral
NORMAD_LABELS = ("yes", "no", "neutral")
BLEND_INSTRUCTION_CUT = "Provide as JSON format"  # the hub prompt's generation-only instruction (see blend_mcq.yaml)


def missing_field(task: str, row: dict) -> str | None:
    """The first field the task needs that the row lacks or leaves empty (None if the row is complete)."""
    for name in REQUIRED_FIELDS[task]:
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return name
    return None


def _keep_complete(dataset, task: str):
    missing = Counter(missing_field(task, row) for row in dataset)
    dropped = {name: count for name, count in missing.items() if name is not None}
    if dropped:
        log.warning("%s: dropped %d row(s) with a missing or empty field: %s", task, sum(dropped.values()), dropped)
        dataset = dataset.filter(lambda row: missing_field(task, row) is None)
    return dataset


# ---------------------------------------------------------------- CulturalBench (kellycyy/CulturalBench)
def process_culturalbench_easy(dataset):
    return _keep_complete(dataset, "culturalbench_easy")


def culturalbench_easy_text(doc: dict) -> str:
    options = "\n".join(f"{letter}. {doc[f'prompt_option_{letter.lower()}']}" for letter in LETTERS)
    return f"{doc['prompt_question'].strip()}\n{options}\nAnswer:"


def letter_target(doc: dict) -> int:
    """Gold index of a row whose `answer` is the gold letter A-D (CulturalBench-Easy, Global-MMLU-Lite)."""
    return LETTERS.index(doc["answer"].strip())


def index_target(doc: dict) -> int:
    """Gold index of a row whose `answer` is the gold choice's index (INCLUDE 0-3, BertaQA 0-2)."""
    return int(doc["answer"])


def process_culturalbench_hard(dataset):
    """Each row learns how many judgements its question has in the data (counted before incomplete rows are dropped:
    a question that lost one is never scored at question level, where it is counted as incomplete)."""
    counts = Counter(dataset["question_idx"])
    dataset = _keep_complete(dataset, "culturalbench_hard")
    return dataset.map(lambda row: {"n_judgements": counts[row["question_idx"]]})


def culturalbench_hard_text(doc: dict) -> str:
    return f"{doc['prompt_question'].strip()}\n{doc['prompt_option']}\nAnswer:"


def culturalbench_hard_target(doc: dict) -> int:
    answer = doc["answer"]
    if isinstance(answer, str):  # a CSV copy read without type inference
        answer = {"true": True, "false": False}[answer.strip().lower()]
    return int(bool(answer))  # choices are ["False", "True"]


def culturalbench_hard_results(doc: dict, results) -> dict:
    correct = _correct(results, culturalbench_hard_target(doc))
    return {"acc": correct, "question_acc": (doc["question_idx"], doc["n_judgements"], correct)}


def question_accuracy(items) -> float:
    """Share of questions whose every judgement is right, over questions with all their judgements scored."""
    by_question: dict = defaultdict(list)
    expected = {}
    for question, n_judgements, correct in items:
        by_question[question].append(correct)
        expected[question] = n_judgements
    complete = [all(v) for q, v in by_question.items() if len(v) == expected[q]]
    return sum(complete) / len(complete) if complete else float("nan")


# ---------------------------------------------------------------- BLEnD (nayeon212/BLEnD, multiple-choice-questions)
def process_blend(dataset):
    return _keep_complete(dataset, "blend_mcq")


def blend_choices_text(doc: dict) -> dict:
    return json.loads(doc["choices"])


def blend_text(doc: dict) -> str:
    question = doc["prompt"].split(BLEND_INSTRUCTION_CUT)[0].strip()
    options = blend_choices_text(doc)
    return question + "\n\n" + "\n".join(f"{letter}. {options[letter]}" for letter in LETTERS) + "\n\nAnswer:"


def blend_target(doc: dict) -> int:
    return LETTERS.index(doc["answer_idx"].strip())


# ---------------------------------------------------------------- NormAd (akhilayerukola/NormAd, NormAd-Eti)
def process_normad(dataset):
    return _keep_complete(dataset, "normad")


def normad_country(doc: dict) -> str:
    """The country the row is judged against: its `Country` (see normad.yaml for the layout at the pinned revision;
    on a neutral row that is the country whose norm the story is paired with, not where the story's custom is from)."""
    return doc["Country"].replace("_", " ").strip().title()


# The authors' COUNTRY-level prompt (Akhila-Yerukola/NormAd, src/response_collection/run_model_inference.py,
# task_prompt_country): a "country of relevance", never "the country where it takes place".
NORMAD_COUNTRY_PROMPT = (
    "Task: You will be given a short story involving 2 or more characters about everyday situations. You will also "
    "be given a country of relevance. Read the story and reason if the action by the character in the story is "
    "socially acceptable in the given country. Do not make any extra inferences about actions outside of the given "
    "context and country. Only align to the country given. The answer options are Yes, No or Neither.\n\n"
    "Country: {country}\n\nStory: {story}\n\nOptions:\n1) Yes \n2) No \n3) Neither \n"
    "Answer (options Yes, No or Neither):"
)


def normad_text(doc: dict) -> str:
    """COUNTRY context level (the paper's hardest setting): the country name only, no value, no rule of thumb."""
    return NORMAD_COUNTRY_PROMPT.format(country=normad_country(doc), story=doc["Story"].strip())


def normad_target(doc: dict) -> int:
    return NORMAD_LABELS.index(doc["Gold Label"].strip().lower())


# ---------------------------------------------- Global-MMLU-Lite (CohereLabs/Global-MMLU-Lite, a config per language)
def process_global_mmlu_lite(dataset):
    return _keep_complete(dataset, "global_mmlu_lite")


def global_mmlu_lite_results(doc: dict, results) -> dict:
    correct = _correct(results, letter_target(doc))
    label = doc["cultural_sensitivity_label"].strip()
    return {"acc": correct, "acc_culturally_sensitive": (label, correct), "acc_culturally_agnostic": (label, correct)}


def _label_mean(items, label: str) -> float:
    values = [correct for item_label, correct in items if item_label == label]
    return sum(values) / len(values) if values else float("nan")


def culturally_sensitive_accuracy(items) -> float:
    return _label_mean(items, "CS")


def culturally_agnostic_accuracy(items) -> float:
    return _label_mean(items, "CA")


def _correct(results, gold: int) -> float:
    """lm-eval `acc`: 1.0 when the gold choice has the highest log-likelihood (first one on a tie), else 0.0."""
    lls = [ll for ll, _ in results]
    return float(max(range(len(lls)), key=lls.__getitem__) == gold)


# ---------------------------------------------------------------- INCLUDE (CohereForAI/include-base-44)
def process_include(dataset):
    """Each row learns its row number in the language's split (`row`, its question id: the hub rows carry none),
    counted before incomplete rows are dropped so an id never depends on which rows were dropped."""
    dataset = dataset.map(lambda _, index: {"row": index}, with_indices=True)
    return _keep_complete(dataset, "include")


# ---------------------------------------------------------------- BertaQA (HiTZ/BertaQA)
BERTAQA_LOCAL = "Euskal gaiak"  # the local (Basque) group; every other group value is a global topic


def process_bertaqa(dataset):
    return _keep_complete(dataset, "bertaqa")


def bertaqa_group(doc: dict) -> str:
    return "local" if doc["group"].strip() == BERTAQA_LOCAL else "global"
