"""The real models' shapes and a random-weight model built from them (never downloaded): what the throughput
benchmark trains and the memory estimate counts. A leaf of benchmarks/.
"""

# Real model shapes (../shared/ENVIRONMENT.md); built with random weights, never downloaded.
REAL_SHAPES = {
    "qwen3-8b": dict(
        arch="qwen3",
        hidden_size=4096,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=12288,
        vocab_size=151936,
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,
    ),
    "deepseek-r1-distill-qwen-7b": dict(
        arch="qwen2",
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        vocab_size=152064,
        max_position_embeddings=131072,
        rope_theta=10_000.0,
    ),
}


def build_model(shape: dict, device: str, seed: int):
    """A random-weight Qwen3/Qwen2 causal LM with these shapes, created directly on the device."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    kwargs = {k: v for k, v in shape.items() if k not in ("arch", "rope_theta")}
    config_cls, model_cls = (
        (Qwen3Config, Qwen3ForCausalLM) if shape["arch"] == "qwen3" else (Qwen2Config, Qwen2ForCausalLM)
    )
    config = config_cls(**kwargs, tie_word_embeddings=False, pad_token_id=0)
    config.rope_parameters = {"rope_type": "default", "rope_theta": shape["rope_theta"]}
    torch.manual_seed(seed)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if device == "cuda" else torch.float32)  # 8B never exists in fp32
    try:
        with torch.device(device):
            return model_cls(config)
    finally:
        torch.set_default_dtype(default_dtype)


def parameter_count(shape: dict) -> int:
    """Parameters of the architecture, counted on the meta device (no memory)."""
    import torch

    with torch.device("meta"):
        return sum(p.numel() for p in build_model(shape, "meta", 0).parameters())
