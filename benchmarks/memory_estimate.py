"""GPU memory of a QLoRA recipe on one GPU, estimated from the real architecture (built on the meta device) and the
recipe's own length, batch and LoRA shape: ``python -m benchmarks.train_throughput --estimate --model qwen3-8b
--recipe sft_qlora`` (or ``dpo_qlora``). The 24 GB claim of the QLoRA recipes rests on this; ``--gpu`` measures.

Terms (bytes):
- frozen base: linear layers of the decoder in 4-bit NF4 (0.5 byte/param, plus one 8-bit absmax per 64-weight block
  and one fp32 constant per 256 blocks with double quantisation); embeddings, lm_head (bitsandbytes leaves the output
  layer unquantised) and norms in the bf16 compute dtype, since train.dpo no longer upcasts them;
- LoRA: r x (in + out) per adapted linear; weights, gradients and AdamW's two moments in bf16 (TRL casts QLoRA
  adapters to bf16; torch's AdamW keeps its moments in the parameter dtype);
- activations per micro-step of T tokens (SFT: per_device x max_length packed tokens; DPO: per_device pairs x 2
  sequences x max_length, the padded worst case): with activation checkpointing one bf16 hidden state per layer,
  plus one decoder layer recomputed for its backward (attention projections, MLP gate/up/activation/product, LoRA
  dropout copies of the inputs), plus the logits (bf16 logits kept for backward, their bf16 gradient, and the fp32
  log-softmax of the loss: 8 bytes x T x vocab);
- CUDA context and cuBLAS / bitsandbytes workspaces (1 GiB) and 10% allocator fragmentation on top.
"""

from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.model_shapes import build_model

GIB = 2**30
NF4_BYTES_PER_PARAM = 0.5
ABSMAX_BYTES_PER_PARAM = {True: 1 / 64 + 4 / (64 * 256), False: 4 / 64}  # double quant on / off
BF16 = 2
LORA_BYTES_PER_PARAM = 4 * BF16  # weight, gradient, AdamW exp_avg and exp_avg_sq
LOGIT_BYTES_PER_ELEMENT = 8
CUDA_CONTEXT_BYTES = 1 * GIB
FRAGMENTATION = 0.10
BUDGET_GIB = 24
TRAIN_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "train"


@dataclass
class Recipe:
    name: str
    dpo: bool
    max_length: int
    per_device: int
    lora_r: int
    nested_quant: bool
    checkpointing: bool

    @property
    def tokens_per_micro_step(self) -> int:
        return self.per_device * self.max_length * (2 if self.dpo else 1)


def load_recipe(model: str, name: str, configs: Path = TRAIN_CONFIGS) -> Recipe:
    """The memory-relevant knobs of configs/train/<model>/<name>.yaml; a DPO recipe's LoRA shape is its SFT adapter's,
    i.e. that of the matching SFT recipe."""
    path = configs / model / f"{name}.yaml"
    config = yaml.safe_load(path.read_text())
    if not config.get("load_in_4bit"):
        raise SystemExit(f"{path}: not a QLoRA recipe (load_in_4bit is not true)")
    dpo = name.startswith("dpo")
    lora_source = yaml.safe_load((configs / model / name.replace("dpo", "sft")).with_suffix(".yaml").read_text())
    return Recipe(
        name=name,
        dpo=dpo,
        max_length=config["max_length"],
        per_device=config["per_device_train_batch_size"],
        lora_r=lora_source["lora_r"],
        nested_quant=bool(config.get("use_bnb_nested_quant")),
        checkpointing=bool(config.get("gradient_checkpointing")),
    )


def parameter_groups(shape: dict) -> dict[str, int]:
    """Parameters by how QLoRA stores them, and the LoRA parameters of all-linear rank 1 (scale by r)."""
    import torch

    with torch.device("meta"):
        model = build_model(shape, "meta", 0)
    groups = {"quantized": 0, "bf16": 0, "lora_per_rank": 0}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}":
            groups["quantized"] += module.weight.numel()
            groups["lora_per_rank"] += module.in_features + module.out_features
    groups["bf16"] = sum(p.numel() for p in model.parameters()) - groups["quantized"]
    return groups


def estimate(shape: dict, recipe: Recipe) -> list[tuple[str, float]]:
    """(term, bytes) rows, the last one the total."""
    groups = parameter_groups(shape)
    hidden, layers, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["vocab_size"]
    head_dim = shape.get("head_dim", hidden // shape["num_attention_heads"])
    kv = shape["num_key_value_heads"] * head_dim
    intermediate = shape["intermediate_size"]
    tokens = recipe.tokens_per_micro_step
    quantized = groups["quantized"] * (NF4_BYTES_PER_PARAM + ABSMAX_BYTES_PER_PARAM[recipe.nested_quant])
    lora_params = groups["lora_per_rank"] * recipe.lora_r
    # One decoder layer's saved tensors for its backward: norm output, q, k, v, attention output, o_proj output,
    # residual, post-norm, gate, up, activation, product, down output; LoRA dropout copies of the 4 distinct inputs.
    layer_values = (7 * hidden + 2 * kv + 4 * intermediate) + (3 * hidden + intermediate)
    stored_layers = 1 if recipe.checkpointing else layers
    checkpointed_inputs = layers * tokens * hidden * BF16 if recipe.checkpointing else 0
    rows = [
        (f"base linear layers, NF4 ({groups['quantized'] / 1e9:.2f} B params)", quantized),
        (f"embeddings, lm_head, norms in bf16 ({groups['bf16'] / 1e9:.2f} B params)", groups["bf16"] * BF16),
        (
            f"LoRA r={recipe.lora_r} weights+grads+AdamW, bf16 ({lora_params / 1e6:.1f} M params)",
            lora_params * LORA_BYTES_PER_PARAM,
        ),
        (f"checkpointed layer inputs ({layers} x {tokens} tokens)", checkpointed_inputs),
        (f"recomputed layer activations ({stored_layers} layer(s))", stored_layers * tokens * layer_values * BF16),
        (f"logits and loss ({tokens} tokens x {vocab} vocab)", tokens * vocab * LOGIT_BYTES_PER_ELEMENT),
        ("CUDA context, cuBLAS/bitsandbytes workspaces", CUDA_CONTEXT_BYTES),
    ]
    subtotal = sum(value for _, value in rows)
    rows.append((f"allocator fragmentation ({FRAGMENTATION:.0%})", subtotal * FRAGMENTATION))
    rows.append(("total", subtotal * (1 + FRAGMENTATION)))
    return rows


def report(model: str, recipe: Recipe, rows: list[tuple[str, float]]) -> str:
    unit = f"{recipe.per_device} pairs x 2 sequences" if recipe.dpo else f"{recipe.per_device} packed sequence(s)"
    lines = [f"{model} {recipe.name}: {unit} of {recipe.max_length} tokens per micro-step, one GPU"]
    lines += [f"  {term:68} {value / GIB:7.2f} GiB" for term, value in rows]
    total = rows[-1][1] / GIB
    lines.append(
        f"estimate: model={model} recipe={recipe.name} peak_gib={total:.1f} budget_gib={BUDGET_GIB} "
        f"fits={'yes' if total <= BUDGET_GIB else 'no'}"
    )
    return "\n".join(lines)


def run(model: str, recipe_name: str, shape: dict) -> str:
    recipe = load_recipe(model, recipe_name)
    text = report(model, recipe, estimate(shape, recipe))
    print(text)
    return text
