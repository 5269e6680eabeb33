"""The verdicts both tests/test_length_control.py and tests/reference/alpaca_eval_lc.py score (numpy only, so the
reference script runs in a scratch venv holding alpaca_eval and nothing of this project).

Deterministic, no random generator: 805 prompts with reference and answer lengths from sines, a scripted judge that
prefers the longer answer (a tanh of the length difference) and harder instructions less, judged in both orders:
``discrete`` verdicts score 0, 0.5 or 1 (AlpacaEval's discrete annotator), ``weighted`` ones the judge's probability
that the model's answer is better, averaged over both orders (AlpacaEval 2.0's weighted annotator). A df_gamed.csv
stand-in in the library's own column layout holds the instruction difficulties and two length-gamed baselines.
"""

import csv
import math

import numpy as np

N = 805  # AlpacaEval 2.0's instructions
SIZES = (20, 50, 100, 400, 805)  # the first n prompts, as max_prompts_per_set takes them
KINDS = ("discrete", "weighted")
GLMS = ("length_controlled_minimal", "length_controlled_v1")
LONGER = (0.0, 300.0)  # every answer padded by this many characters
GAMED_MODELS = ("gpt4_1106_preview_verbose", "gpt4_1106_preview_concise")
PHI, ROOT2 = (math.sqrt(5) - 1) / 2, math.sqrt(2) - 1

# The end-to-end eval's helpfulness prompts (tests/test_eval.py): the pairwise scores the scripted judge gives both
# models, each model's answer lengths (characters the judge saw; the tiny models' greedy answers) and the fixture's
# reference lengths, as that run records them.
E2E_SCORES = (1.0, 0.0, 1.0, 1.0, 0.5)
E2E_ANSWER_CHARS = {"base": (37, 35, 31, 34, 33), "tuned": (10, 10, 8, 16, 0)}
E2E_REFERENCE_CHARS = (225, 130, 73, 163, 233)


def difficulty() -> np.ndarray:
    return 1.2 * np.sin(0.7 * np.arange(N) + 0.2)


def synthetic(kind: str = "discrete", longer: float = 0.0):
    """(scores, answer chars, reference chars) of one model on all N prompts."""
    i = np.arange(N)
    reference = np.round(900 + 500 * np.sin(i))
    answer = np.round(np.maximum(20, reference + longer + 450 * np.sin(2.3 * i + 1)))
    logit = 0.2 + 1.4 * np.tanh((answer - reference) / 450) - 0.6 * difficulty()
    if kind == "weighted":
        first = 1 / (1 + np.exp(-(logit + 0.8 * np.sin(3.1 * i))))  # P(model better), model's answer as A
        second = 1 / (1 + np.exp(-(logit + 0.8 * np.cos(1.7 * i))))  # ... and as B
        return (first + second) / 2, answer, reference
    prefers_model = 1 / (1 + np.exp(-logit))
    first = ((i * PHI) % 1 < prefers_model).astype(float)  # the judge's verdict with the model's answer as A
    second = ((i * ROOT2 + 0.5) % 1 < prefers_model).astype(float)  # ... and as B
    return (first + second) / 2, answer, reference


def gamed_rows() -> list[tuple[str, int, float, float, float]]:
    """df_gamed.csv's rows: (model, index, preference in [0, 1], std_delta_len, instruction_difficulty), the verbose
    baseline's 805 then the concise one's."""
    i = np.arange(N)
    rows = []
    for model, sign in zip(GAMED_MODELS, (-1.0, 1.0), strict=True):
        std_delta_len = sign * (0.4 + 0.6 * np.abs(np.sin(1.3 * i)))
        preference = 1 / (1 + np.exp(-(-1.2 * np.tanh(std_delta_len) - 0.5 * difficulty())))
        rows += [(model, k, preference[k], std_delta_len[k], difficulty()[k]) for k in range(N)]
    return rows


def write_df_gamed(path) -> None:
    """The df_gamed.csv stand-in, in the column layout alpaca_eval.metrics.glm_winrate reads."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "index", "preference", "std_delta_len", "instruction_difficulty",
                         "not_gamed_baseline"])  # fmt: skip
        for model, index, preference, std_delta_len, instruction_difficulty in gamed_rows():
            writer.writerow([model, index, repr(float(preference)), repr(float(std_delta_len)),
                             repr(float(instruction_difficulty)), False])  # fmt: skip


def edge_cases() -> dict[str, tuple]:
    """Verdict sets beyond the grid, on the first 100 prompts: (scores, answer chars, reference chars, instruction
    indices). "first_five_failed" holds the 95 judged prompts of a run whose first 5 judgements failed."""
    scores, answer, reference = (a[:100] for a in synthetic())
    index = np.arange(100)
    return {
        "first_five_failed": (scores[5:], answer[5:], reference[5:], index[5:]),
        "longer_always_wins": ((answer > reference).astype(float), answer, reference, index),  # separated by length
        "all_won": (np.ones(100), answer, reference, index),
        "all_lost": (np.zeros(100), answer, reference, index),
    }
