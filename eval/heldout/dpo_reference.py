"""Which evaluated model is a DPO model, which evaluated model is its DPO reference, and what TRL logged.

A DPO run (train/dpo.py) writes ``dpo_reference.json`` into its adapter folder: the base model, the SFT adapter it
continued (TRL's frozen "ref" copy of it is the reference policy) with the sha256 of that adapter's files, and β.
An evaluated model whose adapter folder holds that file is a DPO model; its reference is the evaluated model whose
adapter has that sha256 (core/llm/base.py ``adapter_fingerprint``, the same content fingerprint the call cache uses,
so a copied or moved adapter still matches and a retrained one does not). A DPO run that started from a merged SFT
model (no ``sft_adapter``) has that model without an adapter as its reference. When the reference is not among the
evaluated models, the DPO reward metrics are null and a warning says which adapter to add.

TRL's own numbers on the validation pairs: the last ``eval_rewards/accuracies`` and ``eval_rewards/margins`` in the
run's ``trainer_state.json`` log history (the adapter folder's, else its newest checkpoint's); null when the run
never evaluated (``eval_strategy: "no"``).
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from core.llm.base import adapter_fingerprint

log = logging.getLogger(__name__)
RECORD = "dpo_reference.json"


@dataclass(frozen=True)
class DpoRun:
    reference: str | None  # the evaluated model that is this DPO model's reference, None when not evaluated
    reference_path: str  # the SFT adapter (or merged SFT model) the run started from, as training named it
    beta: float
    trl_validation: dict | None


def dpo_runs(cfg) -> dict[str, DpoRun]:
    """Every evaluated DPO model by name (module docstring)."""
    fingerprints = {spec.name: adapter_fingerprint(spec.adapter) for spec in cfg.model_specs}
    found = {}
    for spec in cfg.model_specs:
        path = Path(spec.adapter or "") / RECORD
        if not spec.adapter or not path.is_file():
            continue
        record = read_record(path)
        if record["sft_adapter_sha256"]:
            sha = record["sft_adapter_sha256"]
            matches = [s.name for s in cfg.model_specs if s is not spec and fingerprints[s.name] == sha]
        else:
            matches = [
                s.name for s in cfg.model_specs if s.adapter is None and _same_path(s.model, record["base_model"])
            ]
        reference_path = record["sft_adapter"] or record["base_model"]
        if not matches:
            log.warning("held-out: %s's DPO reference %s is not evaluated; add it to models", spec.name, reference_path)
        reference = matches[0] if matches else None
        found[spec.name] = DpoRun(reference, reference_path, record["beta"], trl_validation(spec.adapter))
    return found


def read_record(path: Path) -> dict:
    record = json.loads(path.read_text(encoding="utf-8"))
    optional = (str, type(None))
    fields = {"base_model": str, "sft_adapter": optional, "sft_adapter_sha256": optional, "beta": (int, float)}
    for key, kind in fields.items():
        if not isinstance(record.get(key), kind):
            raise ValueError(f"{path}: field '{key}': missing or of the wrong type (written by train/dpo.py)")
    return record


def _same_path(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def trl_validation(run_dir: str) -> dict | None:
    """TRL's last logged reward accuracy (%) and margin on the validation pairs, with the step and the file."""
    root = Path(run_dir)
    states = [root / "trainer_state.json"] if (root / "trainer_state.json").is_file() else []
    checkpoints = sorted(root.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1]))
    for path in states + checkpoints[::-1]:
        history = json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
        logged = [e for e in history if "eval_rewards/accuracies" in e and "eval_rewards/margins" in e]
        if logged:
            last = logged[-1]
            return {
                "step": last.get("step"),
                "reward_accuracy": 100.0 * last["eval_rewards/accuracies"],
                "reward_margin": last["eval_rewards/margins"],
                "source": str(path),
            }
    return None
