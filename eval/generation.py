"""Responses of an evaluated model to a test set, through the data pipeline's LLM interface (cached per call).

Every model gets the same conversation format and the same Sampling (the run's decoding settings), so differences
in the metrics come from the weights alone. Latency is what the backend measured when the call was made (a cached
response keeps its original latency); with a batching backend it is the wall time of the response's batch.
"""

from datasets import Dataset

from data_pipeline.llm import LLM, Sampling, build_llm
from eval.config import EvalConfig, ModelSpec, llm_config


def build_model_llm(cfg: EvalConfig, spec: ModelSpec) -> LLM:
    llm_cfg = llm_config(spec, cfg)  # the spec's own settings; the run's decoding settings for the rest
    return build_llm(llm_cfg, cfg.cache_dir, role=f"model:{spec.name}")


def sampling_of(cfg: EvalConfig) -> Sampling:
    return Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)


def final_answer(text: str) -> str:
    """The answer without a reasoning model's thinking: the text after the last </think> (all of it if none)."""
    return text.split("</think>")[-1].strip()


def generate_responses(llm: LLM, ds: Dataset, cfg: EvalConfig) -> list[dict]:
    """One response per prompt: {"id", "text" (what judges see), "raw", "output_tokens", "latency_s", "cached"}."""
    system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    conversations = [system + [{"role": "user", "content": prompt}] for prompt in ds["prompt"]]
    outputs = llm.generate(conversations, sampling_of(cfg))
    return [
        {
            "id": row_id,
            "text": final_answer(completion.text) if cfg.strip_reasoning else completion.text,
            "raw": completion.text,
            "output_tokens": completion.output_tokens,
            "latency_s": completion.latency_s,
            "cached": completion.cached,
        }
        for row_id, (completion,) in zip(ds["id"], outputs, strict=True)
    ]
