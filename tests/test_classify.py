"""Classification: thresholding, the logprob LLM classifier's probability, the offline head on held-out seeds."""

import json
import math

import numpy as np
import pytest

from core.llm import LLMConfig, build_llm
from data_pipeline import taxonomy
from data_pipeline.classify import (
    PREDICTED_COLUMN,
    ClassifyConfig,
    EmbeddingClassifier,
    LLMClassifier,
    build_classifier,
    classify_dataset,
    labels_from_proba,
)
from data_pipeline.importers import SEED_PATH
from data_pipeline.schema import make_row, rows_to_dataset


def test_labels_keep_every_subdomain_at_or_above_delta_and_none_otherwise():
    probs = np.array([[0.5, 0.49, 0.9], [0.1, 0.2, 0.3], [0.49999, 0.5000001, 0.0]])
    assert labels_from_proba(probs, [3, 10, 15], 0.5) == [[3, 15], [taxonomy.NONE_ID], [10]]


class ScriptedLogprobs:
    """Answers next_token_logprobs from a table keyed by (subdomain name in the question, prompt in the question)."""

    name = "scripted"

    def __init__(self, table: dict[tuple[str, str], tuple[float, float]]):
        self.table = table
        self.questions: list[str] = []

    def next_token_logprobs(self, conversations, options):
        assert options == ["Yes", "No"]
        out = []
        for conversation in conversations:
            question = conversation[-1]["content"]
            self.questions.append(question)
            yes, no = next(
                v
                for (name, prompt), v in self.table.items()
                if f"Subdomain: {name} (" in question and prompt in question
            )
            out.append({"Yes": yes, "No": no})
        return out


def test_llm_classifier_probability_is_renormalised_yes_over_yes_plus_no():
    cfg = ClassifyConfig(method="llm", labels="release")
    festivals, dance = taxonomy.get(15), taxonomy.get(21)
    table = {(sub.name, "Q"): (-5.0, -4.0) for sub in taxonomy.SUBDOMAINS.values()}
    # Both options unlikely in absolute terms: only their ratio matters.
    table[(festivals.name, "Q")] = (-3.0, -4.0)
    table[(dance.name, "Q")] = (-9.0, -2.0)
    llm = ScriptedLogprobs(table)
    classifier = LLMClassifier(cfg, llm)
    probs = classifier.predict_proba(["Q"])
    column = classifier.label_ids.index
    assert probs.shape == (1, 30)
    assert probs[0, column(15)] == pytest.approx(math.e**-3 / (math.e**-3 + math.e**-4))
    assert probs[0, column(21)] == pytest.approx(math.e**-9 / (math.e**-9 + math.e**-2))
    assert probs[0, column(10)] == pytest.approx(1 / (1 + math.e))
    # One yes/no question per (prompt, subdomain), each naming the subdomain and carrying its description.
    assert len(llm.questions) == 30
    assert any(festivals.description in q and "Yes or No" in q for q in llm.questions)
    assert labels_from_proba(probs, classifier.label_ids, 0.5) == [[15]]


def test_llm_classifier_runs_on_the_tiny_model_through_transformers(tiny_models, tmp_path):
    """Plumbing on a random-weight model: real logprobs, probabilities in [0, 1], cached on the second call."""
    llm_cfg = LLMConfig(model=str(tiny_models["tiny-qwen3"]), dtype="float32",
                        chat_template_kwargs={"enable_thinking": False})  # fmt: skip
    llm = build_llm(llm_cfg, tmp_path / "cache", role="classifier-test")
    classifier = build_classifier(ClassifyConfig(method="llm", labels="release"), llm)
    prompts = ["How is Diwali celebrated in Jaipur?", "Which instruments does a gamelan use?"]
    probs = classifier.predict_proba(prompts)
    assert probs.shape == (2, 30) and np.all((probs >= 0) & (probs <= 1)) and np.isfinite(probs).all()
    raw = llm.next_token_logprobs([classifier._conversation(prompts[0], 15)], ["Yes", "No"])[0]
    expected = math.exp(raw["Yes"]) / (math.exp(raw["Yes"]) + math.exp(raw["No"]))
    assert probs[0, classifier.label_ids.index(15)] == pytest.approx(expected)
    assert np.array_equal(classifier.predict_proba(prompts), probs)


def test_embedding_head_generalises_to_held_out_seed_prompts(tmp_path):
    """Train on 3/4 of the seed set, test on the rest: far above chance (1/40) on prompts it never saw."""
    seeds = [json.loads(line) for line in SEED_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = np.random.default_rng(0)
    held_out = set(rng.choice(len(seeds), size=len(seeds) // 4, replace=False).tolist())
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(s) + "\n" for i, s in enumerate(seeds) if i not in held_out))
    classifier = EmbeddingClassifier(ClassifyConfig(train_file=str(train_file)))
    test = [seeds[i] for i in sorted(held_out)]
    probs = classifier.predict_proba([s["prompt"] for s in test])
    top = [classifier.label_ids[j] for j in probs.argmax(axis=1)]
    accuracy = np.mean([t in s["subdomains"] for t, s in zip(top, test, strict=True)])
    assert accuracy >= 0.5, accuracy
    assert probs.shape[1] == len(taxonomy.CLASSIFIABLE_IDS)


class FixedClassifier:
    name = "fixed"
    label_ids = [11, 15]

    def predict_proba(self, prompts):
        return np.array([[0.9 if "food" in p else 0.1, 0.8 if "festival" in p else 0.2] for p in prompts])


def test_classify_dataset_labels_unlabelled_rows_counts_none_and_keeps_importer_labels():
    rows = [
        make_row("a", "a food festival", [], "test"),
        make_row("b", "nothing cultural here", [], "test"),
        make_row("c", "street food", [15], "test"),  # labelled: kept unless overwrite_labels
    ]
    ds, stats = classify_dataset(rows_to_dataset(rows), FixedClassifier(), ClassifyConfig())
    assert ds["subdomains"] == [[11, 15], [taxonomy.NONE_ID], [15]]
    assert ds[PREDICTED_COLUMN] == [[11, 15], [taxonomy.NONE_ID], [11]]
    assert stats["predicted_none"] == 1 and stats["labels_assigned"] == 2 and stats["kept_importer_labels"] == 1
    assert stats["agreement_exact"] == 0.0
    overwritten, _ = classify_dataset(rows_to_dataset(rows), FixedClassifier(), ClassifyConfig(overwrite_labels=True))
    assert overwritten["subdomains"][2] == [11]
    assert overwritten.features["subdomains"] == ds.features["subdomains"]


def test_classify_config_rejects_bad_values():
    with pytest.raises(ValueError, match="method"):
        ClassifyConfig(method="magic")
    with pytest.raises(ValueError, match="delta"):
        ClassifyConfig(delta=1.5)
