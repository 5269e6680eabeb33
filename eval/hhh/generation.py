"""Responses of an evaluated model to a test set, through the data pipeline's LLM interface (cached per call).

Every model gets the same conversation format; its decoding is its resolved Decoding (eval/decoding.py: the
model's own settings, its family preset, or the run default), shared by a base model and its tuned versions. With
``samples_per_prompt`` k > 1 each prompt is answered k times (candidate seeds 0..k-1, each cached on its own) and
the records come prompt-major: prompt 0's k samples, then prompt 1's, ...

Latency is what the backend measured when the call was made (a cached response keeps its original latency): the
response's own request for vllm (vLLM's per-request metrics) and openai, its batch's for transformers' static
batches. ``wall_s`` is the response's share of the model calls' wall time (throughput = tokens / sum of wall_s).

Models load in groups (``model_groups``): vLLM serves a base model and all its adapters from one engine, so they
generate together and the engine stops after the last of them; any other backend loads one model at a time.
"""

from datasets import Dataset

from core.llm import LLM, Sampling, build_llm, share_vllm_engines
from eval.config import EvalConfig, ModelSpec
from eval.decoding import Decoding, ThinkReader


def build_model_llm(cfg: EvalConfig, spec: ModelSpec) -> LLM:
    """The model's LLM; vLLM models of the same base share one engine (and its LoRA rank)."""
    configs = {s.name: cfg.model_llm_config(s) for s in cfg.model_specs}
    share_vllm_engines(list(configs.values()))
    return build_llm(configs[spec.name], cfg.cache_dir, role=f"model:{spec.name}")


def model_groups(cfg: EvalConfig) -> list[list[ModelSpec]]:
    """The evaluated models in the groups that are loaded together, in config order: the vLLM models of one base
    model and dtype (one engine serves the base and its adapters); every other model alone."""
    groups: dict[tuple, list[ModelSpec]] = {}
    for spec in cfg.model_specs:
        llm = cfg.model_llm_config(spec)
        key = ("vllm", llm.model, llm.dtype) if llm.backend == "vllm" else ("alone", spec.name)
        groups.setdefault(key, []).append(spec)
    return list(groups.values())


def sampling_of(decoding: Decoding, seed: int) -> Sampling:
    return Sampling(
        temperature=decoding.temperature,
        top_p=decoding.top_p,
        top_k=decoding.top_k,
        max_new_tokens=decoding.max_new_tokens,
        seed=seed,
        repetition_penalty=decoding.repetition_penalty,
    )


def generate_responses(llm: LLM, ds: Dataset, cfg: EvalConfig, decoding: Decoding, reader: ThinkReader) -> list[dict]:
    """k records per prompt: {"id", "sample", "text" (what judges see), "raw", "output_tokens", "latency_s",
    "wall_s", "cached"} plus the think-block fields of ThinkReader.read ("final_answer" False: never judged)."""
    system = [{"role": "system", "content": decoding.system_prompt}] if decoding.system_prompt else []
    conversations = [system + [{"role": "user", "content": prompt}] for prompt in ds["prompt"]]
    outputs = llm.generate(conversations, sampling_of(decoding, cfg.seed), n=decoding.samples_per_prompt)
    records = []
    for row_id, completions in zip(ds["id"], outputs, strict=True):
        for sample, completion in enumerate(completions):
            think = reader.read(completion.text, completion.output_tokens)
            answer = think["answer"] if think["answer"] is not None else ""
            records.append(
                {
                    "id": row_id,
                    "sample": sample,
                    "text": answer if cfg.strip_reasoning else completion.text,
                    "raw": completion.text,
                    "output_tokens": completion.output_tokens,
                    "latency_s": completion.latency_s,
                    "wall_s": completion.wall_s,
                    "cached": completion.cached,
                    **think,
                }
            )
    return records
