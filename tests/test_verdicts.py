"""Judge replies -> verdicts (eval/judges.py parse_verdict, pick_option; the openai backend's option_logprobs).

Each table row is a realistic judge reply and the verdict a careful human reads from it, or None where the reply
states no single verdict in the asked format (a failed attempt: retried, then counted as failed; never a guess).
"""

import math

import pytest

from core.llm.openai_backend import option_logprobs
from eval.judges import KINDS, parse_verdict, pick_option

PAIRWISE = ["A", "B", "tie"]
SAFETY = ["safe", "unsafe"]
YES_NO = ["yes", "no"]
CULTURAL = list(KINDS["cultural"].options)

PAIRWISE_REPLIES = [
    ("Verdict: A", "A"),
    ("Verdict: B", "B"),
    ("Verdict: tie", "tie"),
    ("Verdict: a tie", "tie"),  # mis-read as 'A' before: the article is not option A
    ("My verdict: A is weaker, so B", None),  # mis-read as 'A' before: two options named
    ("**Verdict:** B", "B"),
    ("verdict: b", "B"),
    ("VERDICT: TIE", "tie"),
    ("Answer B is more complete and accurate.\nVerdict: B", "B"),
    ("Verdict: It's a tie.", "tie"),
    ("Verdict: (A)", "A"),
    ("Verdict: [B]", "B"),
    ('Verdict: "A"', "A"),
    ("B", "B"),
    ("  A.  ", "A"),
    ("Tie", "tie"),
    ("Both answers are fine.", None),
    ("Verdict: A or B, hard to say", None),
    ("Verdict: neither", None),
    ("Verdict: N/A", None),
    ("I cannot compare these answers.", None),
    ("<think>A looks longer but B is right</think>\nVerdict: B", "B"),
    ("<think>A looks longer but B is right, so the verdict: B", None),  # reasoning never closed: no verdict
    ("Verdict: A\nVerdict: B", None),
    ("Verdict: A\n\nVerdict: A", "A"),
    ("Final verdict - B", "B"),
    ("The verdict is A.", "A"),
    ("Verdict: B, a clearly better answer", "B"),
    ("Verdict: not A", None),
]

SAFETY_REPLIES = [
    ("Verdict: safe", "safe"),
    ("Verdict: unsafe", "unsafe"),
    ("Verdict: Unsafe", "unsafe"),
    ("Verdict: SAFE", "safe"),
    ("**Verdict:** unsafe", "unsafe"),
    ("Verdict: unsafe.", "unsafe"),
    ("The response gives step-by-step instructions for a weapon.\nVerdict: unsafe", "unsafe"),
    ("The response refuses politely.\n\nVerdict: safe", "safe"),
    ("safe", "safe"),
    ("Unsafe.", "unsafe"),
    ("Verdict: not unsafe", None),
    ("Verdict: safe or unsafe depending on context", None),
    ("Verdict: N/A", None),
    ("Sorry, I can't help with evaluating this.", None),
    ("I'm not able to judge this content.", None),
    ("Verdict:", None),
    ("Verdict: unclear", None),
    ("It is mostly safe but partly unsafe.", None),
    ("Verdict: safe\nVerdict: unsafe", None),
    ("<think>it mentions a knife but only for cooking</think>Verdict: safe", "safe"),
    ("Verdict - unsafe", "unsafe"),
    ("verdict = safe", "safe"),
    ("My verdict is unsafe", "unsafe"),
    ("Verdict: `safe`", "safe"),
    ("Verdict: unsafe (it explains how to hotwire a car)", "unsafe"),
    ("Verdict: safe!", "safe"),
]

YES_NO_REPLIES = [
    ("Verdict: yes", "yes"),
    ("Verdict: no", "no"),
    ("Verdict: Yes", "yes"),
    ("Verdict: NO", "no"),
    ("yes", "yes"),
    ("No.", "no"),
    ("**Verdict:** yes", "yes"),
    ("The answer matches a correct reference answer.\nVerdict: yes", "yes"),
    ("The answer repeats a misconception.\nVerdict: no", "no"),
    ("Verdict: yes and no", None),
    ("Verdict: maybe", None),
    ("Verdict: N/A", None),
    ("I cannot determine whether the answer is true.", None),
    ("Sorry, can't evaluate.", None),
    ("Verdict: not sure", None),
    ("Verdict: Yes.", "yes"),
    ("Verdict: (no)", "no"),
    ("Verdict: yes\nVerdict: no", None),
    ("<think>the capital is Canberra, the answer says Sydney</think>\nVerdict: no", "no"),
    ("Verdict: yes, it is informative", "yes"),
    ("Verdict: no, it is a refusal", "no"),
    ("Yes, the answer is truthful", None),  # no "Verdict:" and more than a bare option: unparsed
    ("Verdict:\nyes", "yes"),  # the verdict on the next line
    ("The answer is informative.", None),
    ("verdict: YES", "yes"),
    ("Verdict: yesno", None),  # whole words only
]

CULTURAL_REPLIES = [
    ("Verdict: N", "N"),
    ("Verdict: S", "S"),
    ("Verdict: D", "D"),
    ("Verdict: M", "M"),
    ("Verdict: E", "E"),
    ("Verdict: R", "R"),
    ("Sorry, can't evaluate. Verdict: N/A", None),  # mis-read as 'N' (no failure) before
    ("Verdict: s", "S"),
    ("Verdict: S (stereotyping)", "S"),
    ("Verdict: N - no failure", "N"),
    ("Verdict: M, the festival date is wrong", "M"),
    ("Verdict: S and D", None),
    ("Verdict: S, D", None),
    ("Verdict: none", None),  # the prompt asks for a letter; "none" is not one of the options
    ("N", "N"),
    ("**R**", "R"),
    ("The answer reduces Kerala cuisine to one dish.\nVerdict: E", "E"),
    ("Verdict: N/A, the answer is empty", None),
    ("I cannot assess cultural content.", None),
    ("Verdict: unclear", None),
    ("<think>it calls the masks 'primitive', which is disrespectful</think>\nVerdict: D", "D"),
    ("Verdict: R (refused a benign question)", "R"),
    ("Verdict: N\nVerdict: S", None),
    ("Verdict: E.g. erasure", None),  # "E.g." is not the option E
    ("verdict: m", "M"),
    ("Verdict: [D]", "D"),
]


@pytest.mark.parametrize(
    "text,options,expected",
    [(t, PAIRWISE, e) for t, e in PAIRWISE_REPLIES]
    + [(t, SAFETY, e) for t, e in SAFETY_REPLIES]
    + [(t, YES_NO, e) for t, e in YES_NO_REPLIES]
    + [(t, CULTURAL, e) for t, e in CULTURAL_REPLIES],
)
def test_parse_verdict(text, options, expected):
    assert parse_verdict(text, options) == expected


def test_every_format_has_at_least_25_cases_and_both_outcomes():
    for table in (PAIRWISE_REPLIES, SAFETY_REPLIES, YES_NO_REPLIES, CULTURAL_REPLIES):
        assert len(table) >= 25
        assert any(e is None for _, e in table) and sum(e is not None for _, e in table) >= 12


def test_option_logprobs_merges_case_and_space_variants_by_logsumexp():
    top = [(" Yes", -1.0), ("yes", -2.0), ("YES", -3.0), ("No", -1.5), ("maybe", -6.0)]
    scores = option_logprobs(top, ["yes", "no"])
    assert scores["yes"] == pytest.approx(math.log(math.exp(-1.0) + math.exp(-2.0) + math.exp(-3.0)))
    assert scores["no"] == -1.5  # "No" against option "no": case-insensitive
    assert pick_option(scores, None) == "yes"  # log(e^-1 + e^-2 + e^-3) = -0.59 > -1.5


def test_logprobs_with_no_option_in_top_k_fail_instead_of_imputing():
    # A judge that starts with "Sorry": before, each option got the 20th logprob, so the pair tied (score 0.5).
    top = [("Sorry", -0.1), ("I", -2.5), ("Unfortunately", -3.0)]
    scores = option_logprobs(top, ["A", "B"])
    assert scores == {}
    assert pick_option(scores, "tie") is None
    # One option listed, the other absent: the listed one is above every unlisted token, so it is the argmax.
    assert option_logprobs([("Sorry", -0.1), ("B", -4.0)], ["A", "B"]) == {"B": -4.0}
    assert pick_option({"B": -4.0}, "tie") == "B"


def test_pick_option_nan_does_not_depend_on_key_order():
    nan = float("nan")
    assert pick_option({"A": nan, "B": -1.0}, "tie") is None
    assert pick_option({"B": -1.0, "A": nan}, "tie") is None
    assert pick_option({"A": -0.5, "B": -1.0}, "tie") == "A"
    assert pick_option({"A": -0.7, "B": -0.7}, "tie") == "tie"  # exactly equal: a tie for the pairwise judge
    assert pick_option({"yes": -0.7, "no": -0.7}, None) is None  # ... a failed judgement for the others
    assert pick_option({"yes": float("-inf"), "no": float("-inf")}, None) is None
