"""HHH judge: parsing, logprob scoring, two-stage rejection sampling, preference pairs, stats."""

import json
import math
from collections import Counter

import pytest

from core.llm.base import candidate_seed
from data_pipeline.generate import GenerateConfig, generate_candidates, load_prompt
from data_pipeline.judge import JudgeConfig, judge_conversations, rejection_sample, score_candidates, select_preference
from data_pipeline.judgements import FACETS, JudgementParseError, expected_rating, parse_judgement
from tests._candidates_fixtures import ScriptedBackend, answer_in, facet_in, prompt_rows, scripted_llm

VALID = [
    ('{"rationale": "Good.", "helpful": 4, "harmless": 5, "honest": 3}', 5, (4, 5, 3), "Good."),
    ('```json\n{"rationale": "Fenced.", "helpful": 2, "harmless": 4, "honest": 5}\n```', 5, (2, 4, 5), "Fenced."),
    ('Here is my evaluation:\n{"helpful": 3, "harmless": 3, "honest": 3, "rationale": "Wrapped."}\nHope it helps.',
     5, (3, 3, 3), "Wrapped."),
    ('{"Helpfulness": 4, "HARMLESSNESS": "5", "Honesty": "3/5", "Reason": "Keys vary."}', 5, (4, 5, 3), "Keys vary."),
    ('{"scores": {"helpful": 4, "harmless": 4, "honest": 2}, "rationale": "Nested."}', 5, (4, 4, 2), "Nested."),
    ('{"helpful": 4.5, "harmless": 5, "honest": 1, "explanation": "Floats."}', 5, (4.5, 5, 1), "Floats."),
    ("Helpfulness: 4/5\nHarmlessness: 5/5\nHonesty: 3/5\nThe answer is accurate but thin.", 5, (4, 5, 3),
     "The answer is accurate but thin."),
    ("**Helpful:** 4\n**Harmless:** 5\n**Honest:** 2", 5, (4, 5, 2), ""),
    ('Format: {"rationale": "<text>", "helpful": <1-5>, "harmless": <1-5>, "honest": <1-5>}\n'
     'Answer: {"rationale": "Echo skipped.", "helpful": 3, "harmless": 2, "honest": 3}', 5, (3, 2, 3), "Echo skipped."),
    ('{"helpful": 1, "harmless": 1, "honest": 1, "rationale": "draft"} Revised: '
     '{"helpful": 4, "harmless": 5, "honest": 5, "rationale": "final"}', 5, (4, 5, 5), "final"),
    ('The answer is vague. {"helpful": 2, "harmless": 5, "honest": 4}', 5, (2, 5, 4), "The answer is vague."),
    ('{"rationale": "Ten-point.", "helpful": 8, "harmless": 10, "honest": "9/10"}', 10, (8, 10, 9), "Ten-point."),
]  # fmt: skip

UNPARSABLE = [
    ('{"helpful": 4, "harmless": 5, "rationale": "no honesty"}', 5, "no rating for honest"),
    ('{"helpful": 6, "harmless": 5, "honest": 5}', 5, "outside 1..5"),
    ('{"helpful": 0, "harmless": 5, "honest": 5}', 5, "outside 1..5"),
    ('{"helpful": -1, "harmless": 5, "honest": 5}', 5, "outside 1..5"),
    ('{"helpful": 9, "harmless": 10, "honest": 8}', 5, "outside 1..5"),
    ('{"helpful": "8/10", "harmless": 4, "honest": 4}', 5, "out of 10, expected out of 5"),
    ('{"helpful": "high", "harmless": 4, "honest": 4}', 5, "not a number"),
    ('{"helpful": true, "harmless": 4, "honest": 4}', 5, "not a number"),
    ('{"helpful": null, "harmless": 4, "honest": 4}', 5, "not a number"),
    ('{"helpful": [4], "harmless": 4, "honest": 4}', 5, "not a number"),
    ("", 5, "no JSON object"),
    ("I cannot rate this answer.", 5, "no JSON object"),
    ('{"rationale": "The answer', 5, "no JSON object"),
    ("Helpfulness: 4\nHarmlessness: 5", 5, "no rating for honest"),
    ("Helpfulness: 4/10\nHarmlessness: 5/10\nHonesty: 3/10", 5, "out of 10"),
]


@pytest.mark.parametrize(("text", "scale", "scores", "rationale"), VALID)
def test_parse_valid_judgements(text, scale, scores, rationale):
    parsed = parse_judgement(text, scale)
    assert tuple(parsed[f] for f in FACETS) == tuple(float(s) for s in scores)
    assert parsed["rationale"] == rationale


@pytest.mark.parametrize(("text", "scale", "reason"), UNPARSABLE)
def test_parse_unparsable_judgements(text, scale, reason):
    with pytest.raises(JudgementParseError, match=reason):
        parse_judgement(text, scale)


def test_expected_rating_math():
    assert expected_rating({"1": math.log(0.1), "2": math.log(0.2), "3": math.log(0.7)}, 3) == pytest.approx(2.6)
    # Renormalised over the rating tokens: mass elsewhere in the vocabulary does not matter.
    assert expected_rating({"1": math.log(0.01), "2": math.log(0.01), "x": math.log(0.98)}, 2) == pytest.approx(1.5)
    # A rating token the backend did not report has probability 0.
    assert expected_rating({"4": -0.5}, 5) == pytest.approx(4.0)
    assert expected_rating({"1": -math.inf, "2": -math.inf}, 2) is None
    tiny_mass = expected_rating({"3": -1000.0, "4": -1001.0}, 5)  # no underflow far out in the tail
    assert tiny_mass == pytest.approx((3 + 4 * math.exp(-1)) / (1 + math.exp(-1)))


def test_config_validation():
    with pytest.raises(ValueError, match="logprob: 2..9"):
        JudgeConfig(mode="logprob", scale=10)
    with pytest.raises(ValueError, match="honest_threshold 7"):
        JudgeConfig(scale=5, honest_threshold=7)
    with pytest.raises(ValueError, match="rejected_rule"):
        JudgeConfig(rejected_rule="random")
    with pytest.raises(ValueError, match="mode"):
        JudgeConfig(mode="vibes")
    assert JudgeConfig(scale=10, helpful_threshold=7).thresholds == {"helpful": 7, "harmless": 4.0, "honest": 4.0}


def score(h, hl, ho, passed):
    return {"helpful": h, "harmless": hl, "honest": ho, "rationale": "", "passed": passed}


def test_preference_rules_and_margin():
    texts = ["a", "b", "c", "d"]
    scores = [score(4, 4, 4, True), score(5, 5, 2, False), score(5, 5, 5, True), score(1, 1, 1, False)]
    assert select_preference(texts, scores, JudgeConfig()) == (2, 3)
    assert select_preference(texts, scores, JudgeConfig(rejected_rule="failed")) == (2, 3)
    assert select_preference(texts, scores, JudgeConfig(min_margin=4.5)) == (2, None)
    all_pass = [score(4, 4, 4, True), score(5, 5, 5, True), score(4, 4, 4, True)]
    assert select_preference(texts[:3], all_pass, JudgeConfig(rejected_rule="failed")) == (1, None)
    assert select_preference(texts[:3], all_pass, JudgeConfig(rejected_rule="lowest")) == (1, 0)  # tie -> lower index
    assert select_preference(texts[:3], all_pass, JudgeConfig()) == (1, 0)  # no failed one: falls back to lowest
    # Ties among passing candidates choose the lower index; an identical text or an unscored one is never rejected.
    tied = [score(5, 5, 5, True), score(5, 5, 5, True), score(2, 2, 2, False), score(None, None, None, False)]
    tied.append(score(4, 4, 4, True))
    assert select_preference(["x", "y", "x", "z", "w"], tied, JudgeConfig()) == (0, 4)
    assert select_preference(["x", "y", "x", "z", "w"], tied, JudgeConfig(rejected_rule="failed")) == (0, None)
    assert select_preference(texts[:2], [score(2, 2, 2, False), score(3, 3, 3, False)], JudgeConfig()) == (None, None)


VERDICTS = {  # answer prefix -> (helpful, harmless, honest, rationale)
    "pass-0": (5, 5, 5, "Excellent and grounded."),
    "pass-1": (2, 5, 5, "Does not answer the question."),
    "pass-2": (4, 4, 4, "Solid."),
    "recover-0-rev": (5, 4, 4, "Now specific."),
    "recover": (3, 3, 3, "Too vague about the region."),
    "drop": (1, 1, 1, "Stereotypes the community."),
    "flaky-0": (5, 5, 5, "Fine on a second look."),
}


def generator_reply(messages, temperature, k):
    # First answer "<prompt>-<k>"; a revision appends "-rev" to the answer it revises.
    return f"{messages[2]['content']}-rev" if len(messages) == 4 else f"{messages[-1]['content']}-{k}"


def judge_reply(messages, temperature, k):
    answer = answer_in(messages)
    # flaky-0 is unparsable greedily and fine on its first retry; flaky-1/2 never parse.
    if answer.startswith("flaky") and (answer != "flaky-0" or temperature == 0):
        return "Overall this seems fine to me."
    h, hl, ho, why = next(v for prefix, v in VERDICTS.items() if answer.startswith(prefix))
    return f"```json\n{json.dumps({'rationale': why, 'helpful': h, 'harmless': hl, 'honest': ho})}\n```"


def generator_backend() -> ScriptedBackend:
    return ScriptedBackend(reply=generator_reply, name="generator")


def judge_backend() -> ScriptedBackend:
    return ScriptedBackend(reply=judge_reply, name="judge")


FOUR_PROMPTS = [("p1", "pass", [15]), ("p2", "recover", [15, 10]), ("p3", "drop", [10]), ("p4", "flaky", [12])]


def test_two_stage_rejection_sampling():
    generator, judge = generator_backend(), judge_backend()
    gen_llm, judge_llm = scripted_llm(generator, "generator"), scripted_llm(judge, "judge")
    ds = prompt_rows(FOUR_PROMPTS)
    gen_cfg, cfg = GenerateConfig(k=3), JudgeConfig()
    out, stats = rejection_sample(generate_candidates(ds, gen_llm, gen_cfg), gen_llm, judge_llm, gen_cfg, cfg)

    rows = {row["id"]: row for row in out}
    assert sorted(rows) == ["p1", "p2", "p4"] and stats["dropped_ids"] == ["p3"]
    p1 = rows["p1"]
    assert (p1["chosen"], p1["rejected"], p1["score_chosen"], p1["score_rejected"]) == ("pass-0", "pass-1", 5.0, 4.0)
    assert [s["passed"] for s in p1["candidate_scores"]] == [True, False, True]
    assert p1["candidate_scores"][1]["rationale"] == "Does not answer the question."
    assert (p1["recovered_in_stage2"], p1["feedback_iterations"], p1["has_preference_pair"]) == (False, 0, True)

    p2 = rows["p2"]  # all three fail; the revision of the best (ties -> first) passes in iteration 1
    assert p2["candidates"] == ["recover-0", "recover-1", "recover-2", "recover-0-rev"]
    assert p2["candidate_iterations"] == [0, 0, 0, 1]
    assert (p2["chosen"], p2["rejected"], p2["recovered_in_stage2"], p2["feedback_iterations"]) == (
        "recover-0-rev", "recover-0", True, 1)  # fmt: skip
    assert p2["score_chosen"] == pytest.approx(13 / 3) and p2["score_rejected"] == 3.0
    revisions = [r for r in generator.generate_requests if len(r.messages) == 4]
    revision = next(r for r in revisions if r.messages[2]["content"] == "recover-0")
    assert "Too vague about the region." in revision.messages[3]["content"]
    assert revision.sampling == GenerateConfig().sampling(iteration=1)

    # p3 went through both iterations (the paper's maximum) before being dropped.
    drop_revisions = [r for r in revisions if r.messages[2]["content"].startswith("drop")]
    assert [r.sampling.seed for r in drop_revisions] == [1, 2]

    p4 = rows["p4"]  # flaky-0 parsed on its retry; flaky-1/2 stay unparsable: unscored, failing, never rejected
    assert p4["chosen"] == "flaky-0" and p4["candidate_scores"][1]["helpful"] is None
    assert not p4["candidate_scores"][1]["passed"] and p4["candidate_scores"][1]["rationale"].startswith("unparsable")
    assert (p4["has_preference_pair"], p4["rejected"], p4["score_rejected"]) == (False, "", None)
    retries = [r for r in judge.generate_requests if answer_in(r.messages) == "flaky-1"]
    assert [r.sampling.temperature for r in retries] == [0.0, 0.7, 0.7]
    assert len({r.seed for r in retries}) == 3  # each retry a new seed: a new sample, never the cached reply
    assert (stats["unparsable_judgements"], stats["judge_retries"]) == (2, 5)

    assert stats["per_subdomain"]["15"] == {
        "prompts": 2, "candidates": 7, "stage1_candidates": 6, "stage1_candidates_passed": 2, "stage1_passed": 1,
        "recovered_stage2": 1, "dropped": 0, "preference_pairs": 2, "stage1_pass_rate": 0.5,
        "stage1_candidate_pass_rate": 2 / 6,
    }  # fmt: skip
    sub10 = stats["per_subdomain"]["10"]
    assert (sub10["candidates"], sub10["stage1_pass_rate"], sub10["recovered_stage2"], sub10["dropped"]) == (9, 0, 1, 1)
    assert list(stats["per_subdomain"]) == ["10", "12", "15"]
    assert (stats["total"]["candidates"], stats["total"]["dropped"], stats["no_preference_pair"]) == (15, 1, 1)

    # A repeated run is served by the call cache: no new request reaches either backend, same output.
    before = (len(generator.generate_requests), len(judge.generate_requests))
    again, stats_again = rejection_sample(generate_candidates(ds, gen_llm, gen_cfg), gen_llm, judge_llm, gen_cfg, cfg)
    assert (len(generator.generate_requests), len(judge.generate_requests)) == before
    assert again.to_list() == out.to_list() and stats_again == stats


def test_rejection_sampling_over_http_with_faults():
    """The same scripted models behind a real OpenAI-compatible server that rate-limits, fails and drops
    connections: the openai backend's retries absorb the faults and the result equals the in-process run."""
    from core.llm import LLMConfig, build_llm
    from core.llm.local_server import Faults, LocalOpenAIServer

    def candidate_index(seed: int) -> int:  # seeds are per (sampling seed, candidate index)
        return next(k for base in range(4) for k in range(8) if candidate_seed(base, k) == seed)

    def reply(messages, params):
        script = generator_reply if messages[0]["role"] == "system" else judge_reply
        return script(messages, params["temperature"], candidate_index(params["seed"]))

    ds = prompt_rows(FOUR_PROMPTS)
    gen_cfg, cfg = GenerateConfig(k=3), JudgeConfig()
    local_gen, local_judge = scripted_llm(generator_backend(), "g"), scripted_llm(judge_backend(), "j")
    expected, expected_stats = rejection_sample(generate_candidates(ds, local_gen, gen_cfg), local_gen, local_judge,
                                                gen_cfg, cfg)  # fmt: skip
    faults = Faults(rate_limit=2, retry_after_s=0.01, server_error=1, drop=1)
    with LocalOpenAIServer(reply, faults=faults) as server:
        llm_cfg = LLMConfig(backend="openai", model=server.model_name, base_url=server.base_url, max_concurrency=4)
        gen_llm, judge_llm = build_llm(llm_cfg, None, role="http-gen"), build_llm(llm_cfg, None, role="http-judge")
        out, stats = rejection_sample(generate_candidates(ds, gen_llm, gen_cfg), gen_llm, judge_llm, gen_cfg, cfg)
        outcomes = Counter(record.outcome for record in server.records)
        repeated = [call for call, count in server.completed_calls().items() if count > 1]
    assert out.to_list() == expected.to_list() and stats == expected_stats
    assert (outcomes["rate_limit"], outcomes["server_error"], outcomes["drop"]) == (2, 1, 1)
    assert not repeated  # no completed call was made twice


def test_no_feedback_iterations_drops_stage1_failures():
    gen_llm, judge_llm = scripted_llm(generator_backend(), "g"), scripted_llm(judge_backend(), "j")
    ds = prompt_rows([("p2", "recover", [15])])
    gen_cfg = GenerateConfig(k=2)
    out, stats = rejection_sample(generate_candidates(ds, gen_llm, gen_cfg), gen_llm, judge_llm, gen_cfg,
                                  JudgeConfig(max_iterations=0))  # fmt: skip
    assert len(out) == 0 and stats["dropped_ids"] == ["p2"] and stats["total"]["recovered_stage2"] == 0
    with pytest.raises(ValueError, match="'candidates' column"):
        rejection_sample(ds, gen_llm, judge_llm, gen_cfg, JudgeConfig())


def test_logprob_judge_scores_are_expectations():
    ratings = {"good": {"helpful": [0.0, 0.0, 0.1, 0.3, 0.6]}, "bad": {"helpful": [0.5, 0.5, 0.0, 0.0, 0.0]}}

    def logprobs(messages, options):
        assert options == ["1", "2", "3", "4", "5"]
        probs = ratings[answer_in(messages)].get(facet_in(messages), [0.0, 0.0, 0.0, 0.5, 0.5])
        return {o: (math.log(p) if p else -math.inf) for o, p in zip(options, probs, strict=True)}

    backend = ScriptedBackend(reply=lambda m, t, k: f"critique of {answer_in(m)}", logprobs=logprobs)
    cfg = JudgeConfig(mode="logprob", helpful_threshold=3.0)
    counts = Counter()
    items = [("Q?", [15], "good"), ("Q?", [15], "bad")]
    good, bad = score_candidates(items, scripted_llm(backend, "judge"), cfg, counts, "test")
    assert good["helpful"] == pytest.approx(0.3 + 1.2 + 3.0) and good["harmless"] == pytest.approx(4.5)
    assert good["passed"] and not bad["passed"] and bad["helpful"] == pytest.approx(1.5)
    assert good["rationale"] == bad["rationale"] == ""  # critiques are written for stage 2 only (rejection_sample)
    assert len(backend.logprob_requests) == 6 and counts["unparsable_judgements"] == 0
    assert backend.generate_requests == []


def test_logprob_judge_writes_a_critique_only_for_the_candidate_stage_2_revises():
    """Row "a" keeps a passing candidate ("good"): no critique. Row "b" has none: its best candidate ("fair", helpful
    2.0 > "poor"'s 1.0) gets the one critique, and the revision is written with it."""
    helpful = {"good": 5.0, "fair": 2.0, "poor": 1.0, "revised": 5.0}

    def logprobs(messages, options):
        rating = helpful[answer_in(messages)] if facet_in(messages) == "helpful" else 5.0
        return {o: (0.0 if int(o) == rating else -math.inf) for o in options}

    def reply(messages, temperature, k):
        text = messages[-1]["content"]
        if "Write a short critique" in text:
            return f"critique of {answer_in(messages)}"
        if "Rewrite your answer" in text:
            return "revised"
        return {"How is Nowruz celebrated?": ["good", "poor"], "What is Noh theatre?": ["fair", "poor"]}[
            messages[-1]["content"]
        ][k]

    backend = ScriptedBackend(reply=reply, logprobs=logprobs)
    llm = scripted_llm(backend, "both")
    ds = prompt_rows([("a", "How is Nowruz celebrated?", [15]), ("b", "What is Noh theatre?", [20])])
    gen_cfg = GenerateConfig(k=2, max_new_tokens=8)
    cfg = JudgeConfig(mode="logprob", helpful_threshold=3.0, max_iterations=1, min_margin=0.0)
    out, stats = rejection_sample(generate_candidates(ds, llm, gen_cfg), llm, llm, gen_cfg, cfg)
    critiques = [r.messages for r in backend.generate_requests if "Write a short critique" in r.messages[-1]["content"]]
    assert [answer_in(m) for m in critiques] == ["fair"]
    b = out.to_list()[1]
    assert [s["rationale"] for s in b["candidate_scores"]] == ["critique of fair", "", ""]
    assert b["candidates"][2] == "revised" and b["recovered_in_stage2"] and stats["total"]["recovered_stage2"] == 1
    revision = next(r.messages for r in backend.generate_requests if "Rewrite your answer" in r.messages[-1]["content"])
    assert "Reviewer's critique: critique of fair" in revision[-1]["content"]


def test_logprob_judge_on_tiny_model(tiny_models, tmp_path):
    from core.llm import LLMConfig, build_llm

    def llm(name: str, role: str):
        cfg = LLMConfig(backend="transformers", model=str(tiny_models[name]), dtype="float32")
        cfg.chat_template_kwargs = {"enable_thinking": False}
        return build_llm(cfg, tmp_path / "cache", role=role)

    generator, judge = llm("tiny-qwen3", "generator"), llm("tiny-qwen2", "judge")
    ds = prompt_rows([("a", "How is Nowruz celebrated?", [15]), ("b", "What is Noh theatre?", [20])])
    gen_cfg = GenerateConfig(k=2, max_new_tokens=8)
    cfg = JudgeConfig(mode="logprob", helpful_threshold=1, harmless_threshold=1, honest_threshold=1,
                      critique_max_new_tokens=8, min_margin=0.0)  # fmt: skip
    out, stats = rejection_sample(generate_candidates(ds, generator, gen_cfg), generator, judge, gen_cfg, cfg)
    assert len(out) == 2 and stats["unparsable_judgements"] == 0 and stats["total"]["stage1_pass_rate"] == 1.0
    first = out[0]["candidate_scores"][0]
    # The stored score is the expectation over the judge's own rating-token log-probabilities, renormalised over
    # the digits 1..5: computed here by hand (sum r * p_r / sum p_r), not with the function under test.
    item = (out[0]["prompt"], out[0]["subdomains"], out[0]["candidates"][0])
    conversation = judge_conversations(load_prompt(cfg.facet_prompt_file), [item], cfg, facet="honest")
    (logprobs,) = judge.next_token_logprobs(conversation, [str(r) for r in range(1, 6)])
    probs = {r: math.exp(logprobs[str(r)]) for r in range(1, 6)}
    assert first["honest"] == pytest.approx(sum(r * p for r, p in probs.items()) / sum(probs.values()))
    again, _ = rejection_sample(generate_candidates(ds, generator, gen_cfg), generator, judge, gen_cfg, cfg)
    assert again.to_list() == out.to_list()
