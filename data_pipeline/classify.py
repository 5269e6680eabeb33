"""Multi-label subdomain classification: a probability per subdomain, keep every subdomain with p >= delta.

Three classifiers share one interface (``predict_proba(prompts) -> (n, len(label_ids))``):

- ``embedding`` (the offline default): a one-vs-rest logistic head on all-MiniLM-L6-v2 embeddings, trained on the
  labelled seed set. Positive examples are up-weighted by neg/pos per subdomain, because each subdomain has only a
  handful of seeds and an unweighted head would put almost every prompt below 0.5 (measured in
  ``benchmarks/classify.py``).
- ``description``: cosine similarity to each subdomain's description, mapped to a probability by one Platt scaling
  (a, b) fitted on the seed set, so p is calibrated rather than a raw similarity.
- ``llm``: the paper's setup (Mistral-7B-Instruct). For every (prompt, subdomain) the model is asked a yes/no
  question with the subdomain's description; p = P(Yes) / (P(Yes) + P(No)) from the next-token log-probabilities,
  never a number the model writes.

Prompts with no subdomain at p >= delta are labelled 41 None and counted.
"""

from dataclasses import dataclass

import numpy as np
from datasets import Dataset, List, Value
from tqdm.auto import tqdm

from core.llm import LLM
from data_pipeline import taxonomy
from data_pipeline.embeddings import embed
from data_pipeline.generate import load_prompt
from data_pipeline.importers import SourceSpec, load_source

PREDICTED_COLUMN = "predicted_subdomains"
# Logistic-head training: full-batch gradient descent on L2-normalised embeddings (scaled so logits can reach
# useful magnitudes). Values chosen on the seed set alone; benchmarks/classify.py reports the held-out result.
HEAD_INPUT_SCALE = 5.0
HEAD_L2 = 1e-2
HEAD_STEPS = 500
HEAD_LEARNING_RATE = 1.0


@dataclass
class ClassifyConfig:
    method: str = "embedding"  # "embedding" | "description" | "llm"
    delta: float = 0.5  # keep every subdomain with p >= delta (paper: 0.5)
    labels: str = "all"  # candidate subdomains: "all" (every classifiable id) or "release" (the 30 CULTURAX uses)
    overwrite_labels: bool = False  # False: rows that came labelled keep their labels; predictions are recorded
    train_file: str = ""  # labelled JSONL (prompt, subdomains) for the embedding head; "" = the embedded seed set
    prompt_file: str = "classify_v1.txt"  # LLM yes/no question, under data_pipeline/prompts/
    batch_size: int = 256  # (prompt, subdomain) questions per LLM call batch

    def __post_init__(self):
        if self.method not in ("embedding", "description", "llm"):
            raise ValueError(f"method must be 'embedding', 'description' or 'llm', got '{self.method}'")
        if self.labels not in ("all", "release"):
            raise ValueError(f"labels must be 'all' or 'release', got '{self.labels}'")
        if not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")

    def label_ids(self) -> list[int]:
        return sorted(taxonomy.RELEASE_IDS) if self.labels == "release" else list(taxonomy.CLASSIFIABLE_IDS)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _training_set(cfg: ClassifyConfig, label_ids: list[int]) -> tuple[list[str], np.ndarray]:
    spec = SourceSpec(format="jsonl", path=cfg.train_file) if cfg.train_file else SourceSpec(format="seed")
    rows = load_source(spec).rows
    column = {sid: j for j, sid in enumerate(label_ids)}
    targets = np.zeros((len(rows), len(label_ids)), dtype=np.float64)
    for i, row in enumerate(rows):
        for sid in row["subdomains"]:
            if sid in column:
                targets[i, column[sid]] = 1.0
    return [row["prompt"] for row in rows], targets


class EmbeddingClassifier:
    """One-vs-rest logistic head (numpy) on MiniLM embeddings of a labelled training set."""

    def __init__(self, cfg: ClassifyConfig):
        self.label_ids = cfg.label_ids()
        texts, targets = _training_set(cfg, self.label_ids)
        features = embed(texts).astype(np.float64) * HEAD_INPUT_SCALE
        positives = targets.sum(axis=0)
        # A subdomain without training examples keeps weight 0 and bias -inf-like: it can never be predicted.
        positive_weight = np.where(positives > 0, (len(texts) - positives) / np.maximum(positives, 1), 0.0)
        sample_weight = np.where(targets > 0, positive_weight, 1.0)
        self.weights = np.zeros((features.shape[1], len(self.label_ids)))
        self.bias = np.where(positives > 0, 0.0, -50.0)
        trainable = positives > 0
        for _ in range(HEAD_STEPS):
            probs = _sigmoid(features @ self.weights + self.bias)
            grad = (probs - targets) * sample_weight / len(texts)
            self.weights -= HEAD_LEARNING_RATE * (features.T @ grad + HEAD_L2 * self.weights)
            self.bias -= HEAD_LEARNING_RATE * grad.sum(axis=0) * trainable
        self.name = "embedding-logreg"

    def predict_proba(self, prompts: list[str]) -> np.ndarray:
        features = embed(list(prompts)).astype(np.float64) * HEAD_INPUT_SCALE
        return _sigmoid(features @ self.weights + self.bias)


class DescriptionClassifier:
    """Cosine similarity to subdomain descriptions, Platt-scaled on the seed set into probabilities."""

    def __init__(self, cfg: ClassifyConfig):
        self.label_ids = cfg.label_ids()
        descriptions = [_describe(taxonomy.get(sid)) for sid in self.label_ids]
        self.description_vectors = embed(descriptions).astype(np.float64)
        texts, targets = _training_set(cfg, self.label_ids)
        similarity = embed(texts).astype(np.float64) @ self.description_vectors.T
        # One (a, b) for all subdomains: p = sigmoid(a * cos + b), fitted by Newton steps on the seed labels.
        x, y = similarity.ravel(), targets.ravel()
        a, b = 10.0, -3.0
        for _ in range(50):
            p = _sigmoid(a * x + b)
            w = np.maximum(p * (1 - p), 1e-9)
            gradient = np.array([((p - y) * x).sum(), (p - y).sum()])
            hessian = np.array([[(w * x * x).sum(), (w * x).sum()], [(w * x).sum(), w.sum()]]) + 1e-6 * np.eye(2)
            step = np.linalg.solve(hessian, gradient)
            a, b = a - step[0], b - step[1]
        self.a, self.b = float(a), float(b)
        self.name = "embedding-description"

    def predict_proba(self, prompts: list[str]) -> np.ndarray:
        similarity = embed(list(prompts)).astype(np.float64) @ self.description_vectors.T
        return _sigmoid(self.a * similarity + self.b)


def _describe(sub) -> str:
    return f"{sub.name}: {sub.description}"


class LLMClassifier:
    """P(Yes) / (P(Yes) + P(No)) per (prompt, subdomain) from the model's next-token log-probabilities."""

    OPTIONS = ("Yes", "No")

    def __init__(self, cfg: ClassifyConfig, llm: LLM):
        self.label_ids = cfg.label_ids()
        self.llm = llm
        self.batch_size = cfg.batch_size
        self.template = load_prompt(cfg.prompt_file)
        self.name = f"llm-logprob:{llm.name}"

    def _conversation(self, prompt: str, sid: int) -> list[dict]:
        sub = taxonomy.get(sid)
        question = self.template.substitute(
            name=sub.name, domain=sub.domain, description=sub.description, prompt=prompt
        )
        return [{"role": "user", "content": question}]

    def predict_proba(self, prompts: list[str]) -> np.ndarray:
        questions = [self._conversation(p, sid) for p in prompts for sid in self.label_ids]
        logprobs: list[dict[str, float]] = []
        for start in tqdm(range(0, len(questions), self.batch_size), desc="classify (llm)", unit="batch"):
            logprobs += self.llm.next_token_logprobs(questions[start : start + self.batch_size], list(self.OPTIONS))
        # An option missing from an API's top-k is below every listed token: -inf for the two-way renormalisation.
        yes = np.array([lp.get("Yes", -np.inf) for lp in logprobs], dtype=np.float64)
        no = np.array([lp.get("No", -np.inf) for lp in logprobs], dtype=np.float64)
        # Renormalise over the two options in log space (stable when both are very unlikely).
        probs = 1.0 / (1.0 + np.exp(np.clip(no - yes, -50, 50)))
        return probs.reshape(len(prompts), len(self.label_ids))


def build_classifier(cfg: ClassifyConfig, llm: LLM | None = None):
    if cfg.method == "llm":
        if llm is None:
            raise ValueError("classify.method 'llm' needs the 'classifier' LLM")
        return LLMClassifier(cfg, llm)
    return DescriptionClassifier(cfg) if cfg.method == "description" else EmbeddingClassifier(cfg)


def labels_from_proba(probs: np.ndarray, label_ids: list[int], delta: float) -> list[list[int]]:
    """Every subdomain with p >= delta, in id order; [NONE_ID] when none qualifies."""
    labels = []
    for row in probs:
        chosen = [label_ids[j] for j in np.flatnonzero(row >= delta)]
        labels.append(chosen or [taxonomy.NONE_ID])
    return labels


def classify_dataset(ds: Dataset, classifier, cfg: ClassifyConfig) -> tuple[Dataset, dict]:
    """Adds ``predicted_subdomains``; sets ``subdomains`` where a row has none (or always, with overwrite_labels)."""
    predicted = labels_from_proba(classifier.predict_proba(ds["prompt"]), classifier.label_ids, cfg.delta)
    existing = ds["subdomains"]
    final, agree_exact, agree_any, labelled = [], 0, 0, 0
    for have, got in zip(existing, predicted, strict=True):
        if have and not cfg.overwrite_labels:
            labelled += 1
            agree_exact += set(have) == set(got)
            agree_any += bool(set(have) & set(got))
            final.append(list(have))
        else:
            final.append(got)
    features = ds.features.copy()
    features[PREDICTED_COLUMN] = List(Value("int32"))
    columns = ds.to_dict()
    columns["subdomains"] = final
    columns[PREDICTED_COLUMN] = predicted
    out = Dataset.from_dict(columns, features=features)
    stats = {
        "classifier": classifier.name,
        "delta": cfg.delta,
        "rows": len(ds),
        "predicted_none": sum(p == [taxonomy.NONE_ID] for p in predicted),
        "labels_assigned": len(ds) - labelled,
        "kept_importer_labels": labelled,
        # How often the classifier agrees with labels the rows came with (a free sanity check of the classifier).
        "agreement_exact": agree_exact / labelled if labelled else None,
        "agreement_any": agree_any / labelled if labelled else None,
    }
    return out, stats
