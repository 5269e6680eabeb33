"""The data pipeline's one config: a dataclass parsed from YAML plus CLI overrides by TRL's parser.

``python -m data_pipeline --config configs/data/demo.yaml --seed 7 --llm.generator.model PATH --classify.delta 0.6``

Top-level fields are ordinary HfArgumentParser arguments. Stage settings (``classify``, ``expand``, ``dedup``,
``generate``, ``judge``) and the per-role LLM settings (``llm: {classifier, expander, generator, judge}``) are nested
mappings in the YAML; each is validated into its stage's dataclass, and an unknown key fails with its full dotted
name. Dotted CLI flags (``--judge.max_iterations 1``, ``--sources.0.path FILE``) override one nested value.
"""

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from core.llm import LLMConfig
from data_pipeline.classify import ClassifyConfig
from data_pipeline.dedup import DedupConfig
from data_pipeline.expand import ExpandConfig
from data_pipeline.generate import GenerateConfig, prompt_path
from data_pipeline.importers import SourceSpec
from data_pipeline.judge import JudgeConfig

STAGES = ("import", "classify", "expand", "dedup", "contamination", "split", "generate", "judge", "views")
LLM_ROLES = ("classifier", "expander", "generator", "judge")


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key (dotted) and the file when known."""


def dataclass_from_dict(cls: type, values: dict | None, where: str):
    """Build ``cls(**values)``, failing on unknown keys with the dotted key name (``where.key``)."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key '{where}.{key}' (known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"'{where}': {error}") from error


@dataclass
class PipelineConfig:
    """Everything one dataset build needs; the defaults are the paper's settings where it states them."""

    output_dir: str = field(default="runs/data", metadata={"help": "where dataset/, sft/, dpo/, card, stats go"})
    seed: int = field(default=42, metadata={"help": "seed for splits, few-shot choice and sampling"})
    stages: list[str] = field(default_factory=lambda: list(STAGES), metadata={"help": f"subset of {STAGES}"})
    sources: list[dict] = field(
        default_factory=lambda: [{"format": "seed"}], metadata={"help": "importers.SourceSpec mappings"}
    )
    eval_prompts: list[str] = field(
        default_factory=list, metadata={"help": "evaluation prompt files (.txt lines or .jsonl 'prompt') to guard"}
    )
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    llm_cache_dir: str | None = field(default=None, metadata={"help": "LLM call cache; default output_dir/llm_cache"})
    # Nested mappings (YAML); on the command line override one key at a time: --llm.judge.model X, --expand.max_calls 9
    llm: dict = field(default_factory=dict, metadata={"help": "{classifier|expander|generator|judge: LLMConfig}"})
    classify: dict = field(default_factory=dict, metadata={"help": "ClassifyConfig (--classify.KEY VALUE)"})
    expand: dict = field(default_factory=dict, metadata={"help": "ExpandConfig (--expand.KEY VALUE)"})
    dedup: dict = field(default_factory=dict, metadata={"help": "DedupConfig (--dedup.KEY VALUE)"})
    generate: dict = field(default_factory=dict, metadata={"help": "GenerateConfig (--generate.KEY VALUE)"})
    judge: dict = field(default_factory=dict, metadata={"help": "JudgeConfig (--judge.KEY VALUE)"})

    def __post_init__(self):
        for stage in self.stages:
            if stage not in STAGES:
                raise ConfigError(f"unknown stage '{stage}' in 'stages' (known, in run order: {', '.join(STAGES)})")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ConfigError(f"'split_fractions' must be 3 numbers summing to 1, got {self.split_fractions}")
        if not isinstance(self.llm, dict):
            raise ConfigError("'llm' must be a mapping of role -> LLM settings")
        for role in self.llm:
            if role not in LLM_ROLES:
                raise ConfigError(f"unknown key 'llm.{role}' (roles: {', '.join(LLM_ROLES)})")
        self.llm_configs = {role: dataclass_from_dict(LLMConfig, self.llm[role], f"llm.{role}") for role in self.llm}
        self.source_specs = [dataclass_from_dict(SourceSpec, s, f"sources.{i}") for i, s in enumerate(self.sources)]
        self.classify_config = dataclass_from_dict(ClassifyConfig, self.classify, "classify")
        self.expand_config = dataclass_from_dict(ExpandConfig, self.expand, "expand")
        self.dedup_config = dataclass_from_dict(DedupConfig, self.dedup, "dedup")
        self.generate_config = dataclass_from_dict(GenerateConfig, self.generate, "generate")
        self.judge_config = dataclass_from_dict(JudgeConfig, self.judge, "judge")
        self._check_roles()

    def _check_roles(self) -> None:
        """Every stage that calls a model must have that model configured, so a run fails before any work."""
        for stage, roles in self.roles_by_stage().items():
            for role in roles:
                if role not in self.llm_configs or not self.llm_configs[role].model:
                    raise ConfigError(f"stage '{stage}' needs 'llm.{role}.model' to be set")

    @property
    def builds_classifier(self) -> bool:
        """Expand labels its proposals with the classifier, so it is built for either stage."""
        return "classify" in self.stages or "expand" in self.stages

    def roles_by_stage(self) -> dict[str, list[str]]:
        """The LLM roles each configured stage calls, in run order (an LLM classifier is called by expand too)."""
        classifier = ["classifier"] if self.classify_config.method == "llm" else []
        calls = {
            "classify": classifier,
            "expand": ["expander", *classifier],
            "generate": ["generator"],
            "judge": ["generator", "judge"],
        }
        return {stage: calls[stage] for stage in STAGES if stage in self.stages and calls.get(stage)}

    def prompt_files(self) -> list[tuple[str, Path]]:
        """(config key, path) of every prompt file the configured stages read."""
        files = []
        if self.classify_config.method == "llm" and self.builds_classifier:
            files.append(("classify.prompt_file", self.classify_config.prompt_file))
        if "expand" in self.stages:
            files.append(("expand.prompt_file", self.expand_config.prompt_file))
        if "generate" in self.stages:
            g = self.generate_config
            files += [("generate.system_prompt_file", g.system_prompt_file)]
            files += [("generate.feedback_prompt_file", g.feedback_prompt_file)]
        if "judge" in self.stages:
            j = self.judge_config
            if j.mode in ("structured", "generative"):
                files.append(("judge.judge_prompt_file", j.judge_prompt_file))
            else:
                files += [("judge.facet_prompt_file", j.facet_prompt_file)]
                files += [("judge.critique_prompt_file", j.critique_prompt_file)]
        return [(key, prompt_path(name)) for key, name in files]

    @property
    def cache_dir(self) -> Path:
        return Path(self.llm_cache_dir) if self.llm_cache_dir else Path(self.output_dir) / "llm_cache"

    def resolved(self) -> dict:
        """The config as run, every default filled in (secrets are never fields: keys come from env vars)."""
        resolved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        resolved["sources"] = [dataclasses.asdict(spec) for spec in self.source_specs]
        resolved["llm"] = {role: dataclasses.asdict(llm) for role, llm in self.llm_configs.items()}
        for section in ("classify", "expand", "dedup", "generate", "judge"):
            resolved[section] = dataclasses.asdict(getattr(self, f"{section}_config"))
        resolved["llm_cache_dir"] = str(self.cache_dir)
        return resolved


def _set_dotted(config: dict, dotted: str, value: Any) -> None:
    """Set ``config['a']['b'][0]['c'] = value`` for ``a.b.0.c``, creating mappings as needed."""
    *parents, last = dotted.split(".")
    node: Any = config
    for part in parents:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def parse_config(argv: list[str] | None = None) -> PipelineConfig:
    """YAML (``--config``) + CLI overrides -> PipelineConfig. Unknown keys anywhere fail, naming the key."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config: dict = {}
    if "--config" in argv:
        index = argv.index("--config")
        path = argv[index + 1]
        del argv[index : index + 2]
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: the config must be a YAML mapping")
    # Dotted overrides reach into nested mappings; argparse handles the flat ones.
    flat_args: list[str] = []
    defaults = {f.name: f.default_factory() for f in dataclasses.fields(PipelineConfig) if callable(f.default_factory)}
    args = iter(argv)
    for arg in args:
        key, has_value, value = arg[2:].partition("=")
        if not (arg.startswith("--") and "." in key):
            flat_args.append(arg)
            continue
        if not has_value:
            value = next(args, None)
            if value is None:
                raise ConfigError(f"'--{key}' needs a value")
        root = key.split(".")[0]
        if root not in config and root in defaults:  # e.g. --sources.0.path on top of the default sources
            config[root] = defaults[root]
        _set_dotted(config, key, yaml.safe_load(value))  # YAML scalars: 3 -> int, true -> bool, [a, b] -> list
    parser = TrlParser(PipelineConfig)
    unknown = parser.set_defaults_with_config(**config)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0].lstrip('-')}' in the config (see PipelineConfig)")
    pipeline_config, unused = parser.parse_args_into_dataclasses(args=flat_args, return_remaining_strings=True)
    if unused:
        raise ConfigError(f"unknown argument '{unused[0]}' on the command line (see PipelineConfig)")
    return pipeline_config


def secret_free(values: Any) -> Any:
    """Redact any string that contains the value of an env var named by an ``api_key_env`` (defence in depth)."""
    secrets = {os.environ[name] for name in _api_key_envs(values) if os.environ.get(name)}

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        if isinstance(node, str) and any(secret in node for secret in secrets):
            return "<redacted>"
        return node

    return scrub(values)


def _api_key_envs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["api_key_env"]] if isinstance(node.get("api_key_env"), str) else []
        return found + [name for v in node.values() for name in _api_key_envs(v)]
    if isinstance(node, list):
        return [name for v in node for name in _api_key_envs(v)]
    return []
