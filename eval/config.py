"""All knobs of one eval run, parsed from one YAML (TrlParser: YAML + CLI overrides, unknown keys fail).

Flat fields (decoding, test sets, output) can be overridden on the command line (``--max_new_tokens 32``). The model
list and the per-metric judges are nested mappings in the YAML; they are validated here into dataclasses, and an
unknown key in them fails with the key's path, just like an unknown top-level key.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from core.llm import LLMConfig

PROMPTS_DIR = Path(__file__).parent / "prompts"
HHH_SETS = ("helpfulness", "harmlessness", "honesty")  # the HHH test sets (eval/hhh/testsets.py)
JUDGE_METRICS = ("helpfulness", "safety", "truthfulness", "informativeness", "cultural")
JUDGE_MODES = ("structured", "logprobs", "generative", "classifier", "moderation")  # eval/hhh/judges.py
CLASSIFIER_METRICS = ("safety", "cultural")  # judgements of one (prompt, response) text
# lm-evaluation-harness tasks in eval/lm_eval_tasks: judge-free cultural and general-knowledge benchmarks; the last
# three run once per language (eval/benchmarks/languages.py).
BENCHMARK_TASKS = (
    "culturalbench_easy",
    "culturalbench_hard",
    "blend_mcq",
    "normad",
    "global_mmlu_lite",
    "include",
    "bertaqa",
)


@dataclass
class ModelSpec:
    """One evaluated model: a base model with an optional PEFT adapter, or a merged model path."""

    name: str
    model: str
    adapter: str | None = None
    backend: str | None = None  # None: the run's `backend`
    base_url: str | None = None
    api_key_env: str | None = None
    baseline: str | None = None  # model this one is compared against; None: the first model of the list
    train_runs: list[str] = field(default_factory=list)  # training output dirs holding train_results.json
    # Decoding of this model (eval/decoding.py): its own fields win over its preset, which wins over the run's.
    preset: str | None = None  # reasoning_r1 | qwen3_thinking | qwen3_nonthinking | greedy | paper
    repetition_penalty: float | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # 0 = off
    max_new_tokens: int | None = None
    system_prompt: str | None = None
    samples_per_prompt: int | None = None
    chat_template_kwargs: dict | None = None
    tokenizer: str | None = None  # for think-block and token counts; default: `model` (set it for served models)
    chat_template: str | None = None  # "none": a base model prompted with plain text (core/chat_templates.py)


@dataclass
class JudgeSpec:
    """A judge for one metric: an LLM through the data pipeline's backends, or a sequence-classifier path."""

    backend: str = "transformers"  # openai | transformers | vllm (ignored in classifier mode)
    model: str = ""
    adapter: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None  # NAME of the env var holding the key; the key never reaches disk or W&B
    batch_size: int = 8
    dtype: str = "auto"
    chat_template_kwargs: dict = field(default_factory=dict)
    # structured: a {"reason", "verdict"} JSON object by the backend's structured output; logprobs: the options'
    # first-token probabilities; generative: prose, read by the fallback parser (servers without structured output)
    mode: str = "logprobs"
    prompt: str = ""  # prompt file under eval/prompts/ (or a path); "" = the metric's default versioned prompt
    max_attempts: int = 3  # structured / generative: attempts (new seed each) before a judgement counts as failed
    max_new_tokens: int = 64  # structured / generative: the reply's token budget
    # structured: the reason's maxLength in the schema (None: no maxLength, which OpenAI's strict mode refuses; the
    # token budget bounds it). Set it for local grammars (transformers, vllm, vLLM's server) so small models close
    # the JSON: keep max_new_tokens well above it (an English token is at least one character).
    reason_max_chars: int | None = None
    label_map: dict = field(default_factory=dict)  # classifier mode: classifier label -> verdict option
    threshold: float = 0.5  # moderation mode: flagged when any harm category's probability exceeds it


@dataclass
class BenchmarksSpec:
    """The `benchmarks:` block: lm-eval tasks run for every model (eval/benchmarks/); no block, no benchmarks."""

    tasks: list[str] = field(default_factory=lambda: list(BENCHMARK_TASKS))
    languages: list[str] | None = None  # ISO 639-1 codes the multilingual benchmarks run; None = all of each one's
    # Questions per task (per language for a multilingual one): a seeded sample stratified by label and country
    # (eval/benchmarks/sample.py); an int for every task or {task: int}; None = every question.
    limit: int | dict | None = None
    num_fewshot: int = 0
    batch_size: int = 8
    apply_chat_template: bool = True  # the run's chat template (and chat_template_kwargs), as for generation
    # task -> local file (its test split) or {split: file}; a multilingual task: language -> either; else the hub.
    data: dict = field(default_factory=dict)


@dataclass
class EvalConfig:
    output_dir: str = field(default="runs/eval", metadata={"help": "Where results.json, report.md, PNGs go."})
    experiment: str = field(default="demo", metadata={"help": "Experiment name = W&B group of the training runs."})
    cache_dir: str = field(default="runs/llm_cache", metadata={"help": "LLM call cache (generations, judgements)."})
    report_to: str = field(default="wandb", metadata={"help": "'wandb' or 'none'."})
    wandb_project: str | None = field(default=None, metadata={"help": "Default: env WANDB_PROJECT or aligncultura."})
    wandb_entity: str | None = field(default=None, metadata={"help": "Default: env WANDB_ENTITY."})
    seed: int = field(default=42, metadata={"help": "Sampling seed and bootstrap seed."})
    # Decoding: one setting for every evaluated model.
    backend: str = field(default="transformers", metadata={"help": "Generation backend of evaluated models."})
    batch_size: int = 8
    dtype: str = "auto"
    max_concurrency: int = 8
    chat_template_kwargs: dict = field(default_factory=dict, metadata={"help": "e.g. {enable_thinking: false}"})
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = field(default=0, metadata={"help": "Top-k filter of sampled decoding; 0 = off."})
    max_new_tokens: int = 512
    repetition_penalty: float = field(default=1.0, metadata={"help": "1.0 = off; the paper preset: 1.1."})
    system_prompt: str = ""
    samples_per_prompt: int = field(
        default=1, metadata={"help": "Answers per prompt (distinct seeds); metrics average over them."}
    )
    strip_reasoning: bool = field(default=True, metadata={"help": "Judge only the text after </think>."})
    # Test sets: "fixture" (offline, eval/fixtures), a local copy in the hub's schema (JSON/JSONL/parquet file or
    # save_to_disk folder) or a hub id (tatsu-lab/alpaca_eval, ...) read at the pinned revision.
    culturax_dataset: str = field(default="", metadata={"help": "Pipeline <out>/dataset dir; '' skips CULTURAX."})
    culturax_split: str = "test"
    helpfulness: str = "fixture"
    harmlessness: str = "fixture"
    honesty: str = "fixture"
    helpfulness_revision: str | None = field(default=None, metadata={"help": "Hub commit/tag; None: main."})
    harmlessness_revision: str | None = field(default=None, metadata={"help": "Hub commit/tag; None: main."})
    honesty_revision: str | None = field(default=None, metadata={"help": "Hub commit/tag; None: main."})
    length_control_data: str = field(
        default="",
        metadata={
            "help": "AlpacaEval's df_gamed.csv (instruction difficulty and gamed baselines of the LC win rate's GLM, "
            "length_controlled_v1): a local copy, or the hub dataset holding it (tatsu-lab/alpaca_eval); '' fits "
            "length_controlled_minimal (eval/hhh/length_control.py)."
        },
    )
    length_control_revision: str | None = field(default=None, metadata={"help": "Hub commit/tag; None: main."})
    # Judge-free held-out metrics on the CULTURAX test split (eval/heldout/scoring.py).
    heldout_data: str = field(
        default="", metadata={"help": "Pipeline output dir holding sft/ and dpo/ views; '' skips held-out metrics."}
    )
    heldout_split: str = "test"
    heldout_max_length: int = field(default=1024, metadata={"help": "Tokens per teacher-forced sequence (cut)."})
    max_prompts_per_set: int | None = field(
        default=None,
        metadata={"help": "Prompts per set: a seeded sample stratified by subdomain / category (eval/hhh/testsets.py), "
                  "never the first N; null: every prompt."},
    )  # fmt: skip
    max_prompts_by_set: dict = field(
        default_factory=dict,
        metadata={"help": "Per-set caps overriding max_prompts_per_set, {culturax|helpfulness|harmlessness|honesty: "
                  "N or null (every prompt)}; culturax's also cuts the held-out views (YAML only)."},
    )  # fmt: skip
    bootstrap_resamples: int = 1000
    leakage_tau: int = 10
    models: list[dict] = field(default_factory=list, metadata={"help": "ModelSpec mappings (YAML only)."})
    judges: dict = field(
        default_factory=dict, metadata={"help": "metric -> JudgeSpec mapping; key 'default' applies to all."}
    )
    benchmarks: dict = field(default_factory=dict, metadata={"help": "BenchmarksSpec mapping (YAML only)."})

    def model_llm_config(self, spec: "ModelSpec") -> LLMConfig:
        """An evaluated model's LLMConfig: its resolved decoding (a preset's chat_template_kwargs included), its own
        settings, then the run's. Generation, held-out scoring, the benchmarks and the preflight all read this one."""
        return llm_config(self.decodings[spec.name], spec, self)

    def __post_init__(self):
        self.model_specs = [_strict(ModelSpec, m, f"models[{i}]") for i, m in enumerate(self.models)]
        if not self.model_specs:
            raise ValueError("config: 'models' must list at least one model")
        names = [m.name for m in self.model_specs]
        if len(set(names)) != len(names):
            raise ValueError(f"config: model names must be unique, got {names}")
        from eval.decoding import resolve_decoding  # eval.decoding reads these dataclasses' fields

        self.decodings = {spec.name: resolve_decoding(self, spec) for spec in self.model_specs}
        for spec in self.model_specs:
            try:
                self.model_llm_config(spec)  # backend, chat_template: checked before anything loads
            except ValueError as err:
                raise ValueError(f"config: models '{spec.name}': {err}") from None
        for spec in self.model_specs:
            if spec.baseline is not None and spec.baseline not in names:
                raise ValueError(f"config: models '{spec.name}': baseline '{spec.baseline}' is not a listed model")
        unknown = set(self.judges) - set(JUDGE_METRICS) - {"default"}
        if unknown:
            raise ValueError(f"config: judges: unknown metric(s) {sorted(unknown)}; known: {JUDGE_METRICS}")
        default = self.judges.get("default", {})
        self.judge_specs = {
            metric: _strict(JudgeSpec, {**default, **self.judges.get(metric, {})}, f"judges.{metric}")
            for metric in JUDGE_METRICS
        }
        for metric, spec in self.judge_specs.items():
            if spec.mode not in JUDGE_MODES:
                raise ValueError(f"config: judges.{metric}.mode '{spec.mode}' not in {JUDGE_MODES}")
            if spec.mode == "classifier" and metric not in CLASSIFIER_METRICS:
                raise ValueError(f"config: judges.{metric}.mode 'classifier' works for {CLASSIFIER_METRICS} only")
            if spec.mode == "moderation" and (metric != "safety" or not 0 < spec.threshold < 1):
                raise ValueError(f"config: judges.{metric}: mode 'moderation' judges safety only, threshold in (0, 1)")
            if not spec.model:
                raise ValueError(f"config: judges.{metric}.model is empty (set judges.default.model)")
        plain = [spec.name for spec in self.model_specs if spec.chat_template is not None]
        if self.heldout_data and plain:
            raise ValueError(f"config: heldout_data scores under the chat template; models {plain} have none")
        if self.length_control_data and self.helpfulness == "fixture":
            raise ValueError("config: length_control_data needs AlpacaEval 2.0 as helpfulness (the fixture's prompts "
                             "are not AlpacaEval instructions, so they have no published difficulty)")  # fmt: skip
        self.benchmark_spec = _strict(BenchmarksSpec, self.benchmarks, "benchmarks") if self.benchmarks else None
        if self.benchmark_spec is not None:
            check_benchmarks(self.benchmark_spec)
        unknown = set(self.max_prompts_by_set) - {"culturax", *HHH_SETS}
        if unknown:
            raise ValueError(
                f"config: max_prompts_by_set: unknown set(s) {sorted(unknown)}; known: culturax, {HHH_SETS}"
            )
        for name in ("culturax", *HHH_SETS):
            cap = self.max_prompts(name)
            if cap is not None and (type(cap) is not int or cap < 1):
                raise ValueError(f"config: max_prompts for {name}: a whole number >= 1 or null, got {cap!r}")
        if self.report_to not in ("wandb", "none"):
            raise ValueError(f"config: report_to '{self.report_to}' must be 'wandb' or 'none'")

    def max_prompts(self, name: str) -> int | None:
        """The cap of one set ("culturax" or an HHH set): its max_prompts_by_set entry, else max_prompts_per_set."""
        return self.max_prompts_by_set.get(name, self.max_prompts_per_set)

    def baseline_of(self, spec: ModelSpec) -> str | None:
        """The model a spec is compared against (the first model by default; the first has none)."""
        if spec.baseline is not None:
            return spec.baseline
        first = self.model_specs[0].name
        return None if spec.name == first else first

    def to_dict(self) -> dict:
        """The config as given (for results.json and W&B); it holds env-var names only, never secrets."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_benchmarks(spec: BenchmarksSpec) -> None:
    """Tasks, languages, limits and local files named in the benchmarks block exist (one line per mistake)."""
    from eval.benchmarks.languages import LANGUAGES, selected_languages

    limits = spec.limit if isinstance(spec.limit, dict) else {}
    unknown = [t for t in [*spec.tasks, *spec.data, *limits] if t not in BENCHMARK_TASKS]
    if unknown:
        hint = " (global_mmlu_lite_en is now global_mmlu_lite with languages: [en])" * (
            "global_mmlu_lite_en" in unknown
        )
        raise ValueError(f"config: benchmarks: unknown task(s) {unknown}; known: {BENCHMARK_TASKS}{hint}")
    for task, value in [("limit", spec.limit), *((f"limit.{t}", n) for t, n in limits.items())]:
        if not isinstance(value, dict) and value is not None and (type(value) is not int or value < 1):
            raise ValueError(f"config: benchmarks.{task}: a whole number >= 1 or null, got {value!r}")
    multilingual = [t for t in spec.tasks if t in LANGUAGES]
    if spec.languages is not None:
        known = sorted({code for t in multilingual for code in LANGUAGES[t]})
        stray = [code for code in spec.languages if code not in known]
        if stray:
            raise ValueError(f"config: benchmarks.languages: {stray} not a language of {multilingual}; known: {known}")
    for task in multilingual:
        languages = selected_languages(task, spec.languages)
        if not languages:
            known = list(LANGUAGES[task])
            raise ValueError(
                f"config: benchmarks.languages {spec.languages} leaves {task} no language (it has {known})"
            )
        local = spec.data.get(task)
        if local is not None:
            if not isinstance(local, dict) or set(local) - set(LANGUAGES[task]):
                raise ValueError(f"config: benchmarks.data.{task}: a mapping language -> file, languages of {task}")
            missing = [code for code in languages if code not in local]
            if missing:
                raise ValueError(f"config: benchmarks.data.{task}: no file for language(s) {missing} of this run")


def llm_config(*sources) -> LLMConfig:
    """An LLMConfig whose every field comes from the first source with a non-None attribute of that name."""
    values = {}
    for name in (f.name for f in dataclasses.fields(LLMConfig)):
        value = next((getattr(s, name) for s in sources if getattr(s, name, None) is not None), None)
        if value is not None:
            values[name] = value
    return LLMConfig(**values)


def _strict(cls, mapping: dict, where: str):
    if not isinstance(mapping, dict):
        raise ValueError(f"config: {where} must be a mapping, got {type(mapping).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(mapping) - known
    if unknown:
        raise ValueError(f"config: {where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        return cls(**mapping)
    except TypeError as err:
        raise ValueError(f"config: {where}: {err}") from err


def parse_config(argv: list[str] | None = None) -> EvalConfig:
    """`--config FILE.yaml` plus CLI overrides of flat fields; unknown keys anywhere fail."""
    (cfg,) = TrlParser([EvalConfig]).parse_args_and_config(argv)
    return cfg
