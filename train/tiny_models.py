"""Build tiny random-weight stand-ins of the real model architectures, fully offline.

``python -m train.tiny_models --out DIR`` writes folders that load with ``from_pretrained`` exactly like the hub
models they stand in for, so every code path (chat template, TRL training template swap, LoRA target modules,
generation) is the one a GPU user runs with the real ids; only the sizes differ:

- ``DIR/tiny-qwen3``: ``Qwen3ForCausalLM`` + Qwen3-8B's real chat template (ChatML, ``<think>`` handling);
- ``DIR/tiny-qwen2``: ``Qwen2ForCausalLM`` + DeepSeek-R1-Distill-Qwen-7B's real chat template and specials;
- ``DIR/tiny-gemma``: ``GemmaForCausalLM`` with Gemma-7B's specials (ids 0-3 as in google/gemma-7b), tied
  embeddings, no chat template (the paper's base-model baseline, prompted with plain text);
- ``DIR/tiny-llama``: ``LlamaForCausalLM`` with DeepSeek-LLM-7B-base's specials, no chat template (the other one);
- ``DIR/tiny-beaver-dam``: ``LlamaForSequenceClassification`` shaped as Beaver-Dam-7B, the safety moderator: the 14
  BeaverTails harm categories as ``id2label``, ``multi_label_classification``, Llama's ``<s>``/``</s>``/``<unk>``
  plus the ``<pad>`` its training code adds (eval/hhh/moderation.py). Random weights: its flags are plumbing.

The chat templates are the real ones TRL ships in ``trl/chat_templates``; TRL recognises them and swaps in its
training variants, which carry the ``{% generation %}`` markers that assistant-only loss needs. The tokenizer is a
byte-level BPE trained locally with Qwen's pre-tokenizer regex, so any text (any script, any bytes) encodes.
"""

import argparse
import sys
from pathlib import Path

import torch
import trl
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from core.cli import Command, run_command

# Qwen2/Qwen3 tokenizer.json pre-tokenizer pattern (GPT-4 style split on letters, single digits, punctuation).
QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEMPLATES_DIR = Path(trl.__file__).parent / "chat_templates"
VOCAB_SIZE = 1024

# Special tokens as the real tokenizers name them.
QWEN3_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
DEEPSEEK_SPECIALS = [
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<think>",
    "</think>",
    "<｜▁pad▁｜>",
]
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # google/gemma-7b's ids 0, 1, 2, 3
DEEPSEEK_LLM_SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"]  # deepseek-ai/deepseek-llm-7b-base
LLAMA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]  # Llama-7B's ids 0, 1, 2, and the <pad> Beaver-Dam-7B's code adds
# Beaver-Dam-7B's id2label: the BeaverTails harm categories (eval/hhh/moderation.py reads the same list from there).
BEAVERTAILS_CATEGORIES = [
    "animal_abuse",
    "child_abuse",
    "controversial_topics,politics",
    "discrimination,stereotype,injustice",
    "drug_abuse,weapons,banned_substance",
    "financial_crime,property_crime,theft",
    "hate_speech,offensive_language",
    "misinformation_regarding_ethics,laws_and_safety",
    "non_violent_unethical_behavior",
    "privacy_violation",
    "self_harm",
    "sexually_explicit,adult_content",
    "terrorism,organized_crime",
    "violence,aiding_and_abetting,incitement",
]

# A small original English corpus so merges look like words; byte-level BPE still encodes anything.
CORPUS = """\
Culture is the shared way of life of a people: their language, food, crafts, music, dance and festivals.
How do families in Kerala celebrate Onam, and what dishes appear on the banana-leaf feast?
Explain the meaning of the masks worn during the Venetian carnival and how they are made by artisans.
What should a visitor know before entering a Shinto shrine or a mosque for the first time?
The museum keeps artifacts, monuments and historical sites that tell the story of a nation.
Traditional weaving, pottery and wood carving are crafts passed from one generation to the next.
Opera, theatre and folk dance are performed at festivals and markets across many regions.
Newspapers, magazines, books, radio, television, film and video games carry stories to new audiences.
Fashion design, graphic design, interior design and architecture shape how cities look and feel.
A helpful, harmless and honest answer respects every culture and avoids stereotypes.
National parks, botanical gardens, zoos, aquariums and marine ecosystems are natural heritage.
Photography and fine arts record the landscapes, people and rituals of a place.
Bio-cultural practices link communities to the land, the seasons and the animals around them.
Folk sports such as kabaddi, sumo, hurling and buzkashi are played at village gatherings.
Social networks and blogs spread recipes, songs and slang across the world in minutes.
"""


def train_tokenizer(special_tokens: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    return tokenizer


def qwen3_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(QWEN3_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=(TEMPLATES_DIR / "qwen3.jinja").read_text(encoding="utf-8"),
        model_max_length=4096,
    )
    tokenizer.padding_side = "right"
    return tokenizer


def deepseek_r1_distill_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(DEEPSEEK_SPECIALS),
        bos_token="<｜begin▁of▁sentence｜>",
        eos_token="<｜end▁of▁sentence｜>",
        pad_token="<｜▁pad▁｜>",
        chat_template=(TEMPLATES_DIR / "deepseek_r1_distill.jinja").read_text(encoding="utf-8"),
        model_max_length=4096,
    )
    # The real tokenizer prepends BOS itself; the chat template writes {{bos_token}} too, as the real one does.
    tokenizer.padding_side = "right"
    return tokenizer


def plain_tokenizer(specials: list[str], bos: str, eos: str, pad: str | None = None) -> PreTrainedTokenizerFast:
    """A base model's tokenizer: no chat template; BOS prepended to every text, as Llama's and Gemma's tokenizers do."""
    tokenizer = train_tokenizer(specials)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    unk = "<unk>" if "<unk>" in specials else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk, model_max_length=4096
    )


def plain_models() -> list[tuple[str, PreTrainedTokenizerFast, object]]:
    """(name, tokenizer, model) of the paper's base-model baselines and its moderator, the tiny_config_kwargs shapes
    with each real model's own structure (Gemma ties its embeddings; Llama-7B does not)."""
    gemma = plain_tokenizer(GEMMA_SPECIALS, "<bos>", "<eos>", "<pad>")
    deepseek = plain_tokenizer(DEEPSEEK_LLM_SPECIALS, DEEPSEEK_LLM_SPECIALS[0], DEEPSEEK_LLM_SPECIALS[1])
    beaver = plain_tokenizer(LLAMA_SPECIALS, "<s>", "</s>", "<pad>")
    gemma_config = GemmaConfig(**{**tiny_config_kwargs(gemma), "vocab_size": len(gemma), "tie_word_embeddings": True})
    labels = dict(enumerate(BEAVERTAILS_CATEGORIES))
    moderator_config = LlamaConfig(
        **{**tiny_config_kwargs(beaver), "vocab_size": len(beaver)},
        id2label=labels,
        label2id={name: i for i, name in labels.items()},
        problem_type="multi_label_classification",
    )
    return [
        ("tiny-gemma", gemma, GemmaForCausalLM(gemma_config)),
        (
            "tiny-llama",
            deepseek,
            LlamaForCausalLM(LlamaConfig(**{**tiny_config_kwargs(deepseek), "vocab_size": len(deepseek)})),
        ),
        ("tiny-beaver-dam", beaver, LlamaForSequenceClassification(moderator_config)),
    ]


def tiny_config_kwargs(tokenizer: PreTrainedTokenizerFast) -> dict:
    """Shapes small enough for a CPU test, with the real models' structure (GQA, untied embeddings). head_dim is the
    real models' 64-or-more kind: vLLM's CPU attention refuses head_dim 16, and both families must run through
    transformers and vLLM alike (hidden_size / heads = head_dim, as Qwen2 derives it). The vocabulary is padded to a
    multiple of 64 as the real checkpoints' is; ``build`` then drops the padding rows (see there)."""
    return dict(
        vocab_size=((len(tokenizer) + 63) // 64) * 64,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        intermediate_size=256,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def build(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write every tiny model (module docstring) under ``out_dir``; returns their paths by name. The chat models are
    built first, so their weights do not depend on the others'."""
    torch.manual_seed(seed)
    paths = {}
    for name, make_tokenizer, config_cls, model_cls, rope_theta in [
        ("tiny-qwen3", qwen3_tokenizer, Qwen3Config, Qwen3ForCausalLM, 1_000_000.0),
        ("tiny-qwen2", deepseek_r1_distill_tokenizer, Qwen2Config, Qwen2ForCausalLM, 10_000.0),
    ]:
        tokenizer = make_tokenizer()
        config = config_cls(**tiny_config_kwargs(tokenizer))
        config.rope_parameters = {"rope_type": "default", "rope_theta": rope_theta}
        model = model_cls(config)
        path = out_dir / name
        tokenizer.save_pretrained(path)
        config.save_pretrained(path)  # the tokenizer loads by the model type (Qwen2's adds <|endoftext|>)
        # One embedding row per token of the tokenizer as it loads (transformers adds Qwen's <|endoftext|> to the
        # DeepSeek one). Real checkpoints pad theirs (Qwen3-8B: 151,936 rows for 151,669 tokens) with rows training
        # drives to negligible probability; random padding rows carry real probability mass, and lm-eval's hf model
        # with `peft=` resizes the embedding to len(tokenizer) before loading an adapter, so its log-likelihoods would
        # not be the model's that vLLM and our transformers backend score. Initialised padded and then cut (the RNG
        # state kept for the next model), the real tokens' weights are those of the padded model.
        with torch.random.fork_rng():
            model.resize_token_embeddings(len(AutoTokenizer.from_pretrained(path)))
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(path)
        paths[name] = path
    for name, tokenizer, model in plain_models():
        path = out_dir / name
        tokenizer.save_pretrained(path)
        if model.can_generate():
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(path)
        paths[name] = path
    return paths


COMMAND = Command(
    name="python -m train.tiny_models",
    purpose="Build the tiny random-weight stand-ins (Qwen3, Qwen2, Gemma, Llama, Beaver-Dam) that tests and demos use.",
    example="python -m train.tiny_models --out runs/tiny_models",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    parser.add_argument("--out", type=Path, required=True, help="folder to write tiny-qwen3/, tiny-qwen2/, ... into")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        raise NotADirectoryError(20, "exists and is not a folder (--out)", str(args.out))
    for name, path in build(args.out, args.seed).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
