"""Domain expansion: only on-subdomain, novel, eval-clean proposals are kept; targets and the call budget hold."""

from collections import Counter

import numpy as np
import pytest

from core.llm import Completion
from data_pipeline import taxonomy
from data_pipeline.dedup import DedupConfig
from data_pipeline.expand import ExpandConfig, expand_dataset, imbalance_ratio, parse_proposal, subdomain_counts
from data_pipeline.schema import ORIGIN_EXPANDED, make_row, rows_to_dataset

CRAFTS, DANCE, FILM = 12, 21, 16


class ScriptedExpander:
    """Replies from a per-subdomain queue (read off the conversation), one per candidate; records the calls."""

    name = "scripted:expander"

    def __init__(self, replies: dict[int, list[str]]):
        self.replies = {sid: list(texts) for sid, texts in replies.items()}
        self.calls = 0
        self.conversations = []

    def generate(self, conversations, sampling, n=1):
        out = []
        for conversation in conversations:
            self.conversations.append(conversation)
            request = conversation[-1]["content"]
            sid = next(s for s, sub in taxonomy.SUBDOMAINS.items() if f"subdomain: {sub.name} (" in request)
            queue = self.replies[sid]
            out.append([Completion(queue.pop(0) if queue else "", 1, 0.0, False) for _ in range(n)])
            self.calls += n
        return out


class KeywordClassifier:
    """p = 0.9 for a subdomain whose keyword appears in the prompt, else 0.1."""

    name = "keywords"
    label_ids = [CRAFTS, DANCE, FILM]
    keywords = {CRAFTS: "pottery", DANCE: "dance", FILM: "film"}

    def predict_proba(self, prompts):
        return np.array([[0.9 if self.keywords[s] in p.lower() else 0.1 for s in self.label_ids] for p in prompts])


def seed_rows():
    rows = [make_row(f"c{i}", f"How is pottery glazed in village number {i} of the northern province?", [CRAFTS],
                     "test") for i in range(4)]  # fmt: skip
    rows.append(make_row("d0", "What does the lion dance at Lunar New Year symbolise in Penang?", [DANCE], "test"))
    return rows


def run(replies, cfg, eval_prompts=()):
    expander = ScriptedExpander(replies)
    ds, stats = expand_dataset(
        rows_to_dataset(seed_rows()), expander, KeywordClassifier(), 0.5, cfg, DedupConfig(), list(eval_prompts), 42
    )
    return ds, stats, expander


def test_keeps_only_on_subdomain_novel_and_eval_clean_prompts_with_provenance():
    replies = {
        DANCE: [
            "1. Why do Balinese legong dance performers train from early childhood?",  # kept (list marker stripped)
            "How are film festivals funded in Burkina Faso?",  # classified as film, not dance: off-subdomain
            "What does the lion dance at Lunar New Year symbolise in Penang?",  # repeats a kept row: duplicate
            "How is the sardana dance taught to children in Barcelona squares?",  # near the eval prompt
            "ok",  # too short to be a prompt: unparsable
            "Which steps make the Irish step dance competitions so strict about posture?",  # kept
        ]
    }
    eval_prompts = ["How is the sardana dance taught to the children in Barcelona squares?"]
    cfg = ExpandConfig(targets={DANCE: 3}, min_per_subdomain=0, per_round=2, max_calls=6, few_shot=1)
    ds, stats, expander = run(replies, cfg, eval_prompts)
    expanded = [row for row in ds if row["origin"] == ORIGIN_EXPANDED]
    assert [row["prompt"] for row in expanded] == [
        "Why do Balinese legong dance performers train from early childhood?",
        "Which steps make the Irish step dance competitions so strict about posture?",
    ]
    assert stats["rejected"] == {"duplicate": 1, "near_eval": 1, "off_subdomain": 1, "unparsable": 1}
    for row in expanded:
        assert row["subdomains"] == [DANCE]
        assert row["generator"] == "scripted:expander" and row["source"] == "expanded:scripted:expander"
        assert row["parents"] == ["d0"]  # the one dance example was the few-shot example
    assert stats["calls"] == 6 == expander.calls and stats["accepted"] == 2
    assert stats["below_target_after"] == {}
    # The few-shot example reaches the expander.
    assert "lion dance" in expander.conversations[0][-1]["content"]


def test_a_near_repeat_within_one_round_is_a_duplicate_of_the_first():
    legong = "Why do Balinese legong dance performers begin their training in early childhood?"
    replies = {DANCE: [legong, legong.replace("early", "very early")]}
    ds, stats, _ = run(replies, ExpandConfig(min_per_subdomain=0, targets={DANCE: 5}, per_round=2, max_calls=2))
    assert [row["prompt"] for row in ds if row["origin"] == ORIGIN_EXPANDED] == [legong]
    assert stats["rejected"] == {"duplicate": 1}


def test_stops_at_target_and_rebalances():
    replies = {DANCE: [f"How is the {w} dance performed at weddings in {p}?" for w, p in
                       [("hora", "Romania"), ("dabke", "Lebanon"), ("bhangra", "Punjab"), ("kecak", "Bali"),
                        ("haka", "Aotearoa"), ("polka", "Bohemia")]]}  # fmt: skip
    ds, stats, expander = run(replies, ExpandConfig(min_per_subdomain=0, targets={DANCE: 4, CRAFTS: 4}, per_round=2))
    counts = subdomain_counts(ds["subdomains"])
    assert counts[DANCE] == 4 and counts[CRAFTS] == 4
    # Two rounds of two proposals for dance (1 -> 3 -> 5 would overshoot: the fourth proposal is surplus).
    assert stats["accepted"] == 3 and stats["rejected"] == {"target_reached": 1}
    assert stats["imbalance_ratio_before"] == 4.0 and stats["imbalance_ratio_after"] == 1.0
    assert expander.calls == 4


def test_call_budget_stops_expansion_when_nothing_is_accepted():
    replies = {DANCE: ["How are film festivals funded in Burkina Faso?"] * 50}
    ds, stats, expander = run(replies, ExpandConfig(min_per_subdomain=0, targets={DANCE: 10}, per_round=3,
                                                    max_calls=7, max_rounds=100))  # fmt: skip
    assert stats["accepted"] == 0 and len(ds) == 5
    assert expander.calls == 6 and stats["calls"] == 6  # a third round of 3 would exceed the budget of 7
    assert stats["rejected"]["off_subdomain"] == expander.calls
    assert stats["below_target_after"] == {str(DANCE): 9}


def test_expansion_is_deterministic():
    replies = {DANCE: [f"Why is the {w} dance important to {p} families?" for w, p in
                       [("hora", "Romanian"), ("dabke", "Lebanese"), ("kecak", "Balinese")]]}  # fmt: skip
    cfg = ExpandConfig(min_per_subdomain=0, targets={DANCE: 3}, per_round=1)
    first, _, a = run(replies, cfg)
    second, _, b = run(replies, cfg)
    assert first.to_list() == second.to_list()
    assert a.conversations == b.conversations


MAASAI = "How do Maasai elders choose the names of age sets?"
RYOKAN = "What is the origin of the Japanese ryokan inn?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'  - "{MAASAI}"\nextra', MAASAI),
        ("<think>hmm</think>\n2) Prompt: What is a ryokan?  ", "What is a ryokan?"),
        ("Prompt: Why?", None),  # under 15 characters: not a prompt
        (f"<think>plan</think>\n{RYOKAN}", RYOKAN),
        ("", None),
    ],
)
def test_parse_proposal(text, expected):
    assert parse_proposal(text) == expected


def test_imbalance_ratio_over_present_in_scope_subdomains():
    counts = Counter({1: 10, 2: 5, 3: 0})
    assert imbalance_ratio(counts, [1, 2, 3]) == 2.0
    assert imbalance_ratio(Counter(), [1]) is None


def test_config_validates_targets():
    with pytest.raises(KeyError, match="999"):
        ExpandConfig(targets={999: 3})
    assert ExpandConfig(targets={"21": 7}).target_by_subdomain()[21] == 7
    assert len(ExpandConfig().target_by_subdomain()) == len(taxonomy.RELEASE_IDS)
    assert len(ExpandConfig(subdomains="all").target_by_subdomain()) == len(taxonomy.CLASSIFIABLE_IDS)
