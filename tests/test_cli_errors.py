"""Every command a user runs reports a user error as one line on stderr, naming what and where, with exit code 2;
a traceback only with --debug or LOGLEVEL=DEBUG.

The error table runs in this process through each command's own ``__main__`` block (``run_command`` and all, as
``python -m`` runs it), so it takes seconds; one subprocess per entry point (slow tier) checks the real exit code and
stderr of a separate process.
"""

import os
import runpy
import socket
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.conftest import REPO_ROOT

UNSET_KEY = "ALIGNCULTURA_TEST_UNSET_KEY"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_yaml(path, values: dict) -> str:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


def cases(tmp) -> list[tuple[str, list[str], str]]:
    """(command, arguments, the exact error line expected on stderr)."""
    tmp.mkdir(parents=True, exist_ok=True)
    records = tmp / "prompts.jsonl"
    records.write_text('{"prompt": "Is tipping expected in Japan?"}\n{"prompt": 7}\n', encoding="utf-8")
    data = {"output_dir": str(tmp / "data"), "stages": ["import", "split"]}
    openai_role = {"backend": "openai", "model": "m", "base_url": f"http://127.0.0.1:{free_port()}/v1"}
    generating = {**data, "stages": ["import", "split", "generate"], "sources": [{"format": "seed"}]}
    unset_key = {**generating, "llm": {"generator": {**openai_role, "api_key_env": UNSET_KEY}}}
    unset_key["llm"]["generator"]["base_url"] = "http://127.0.0.1:9/v1"  # never reached: the key fails first
    eval_config = yaml.safe_load((REPO_ROOT / "configs" / "eval" / "demo_tiny.yaml").read_text())
    not_a_folder = tmp / "not_a_folder"
    not_a_folder.write_text("")
    bad_record = write_yaml(tmp / "bad_record.yaml", {**data, "sources": [{"format": "jsonl", "path": str(records)}]})
    dead = write_yaml(tmp / "dead.yaml", {**generating, "llm": {"generator": openai_role}})
    port = openai_role["base_url"].split(":")[2].split("/")[0]
    return [
        ("data_pipeline", ["--config", str(tmp / "gone.yaml")], f"{tmp / 'gone.yaml'}: No such file or directory"),
        ("data_pipeline", ["--config", write_yaml(tmp / "unknown.yaml", {"sedd": 1})],
         "unknown key 'sedd' in the config (see PipelineConfig)"),
        ("data_pipeline", ["--config", write_yaml(tmp / "unset.yaml", unset_key)],
         f"llm.generator.api_key_env: environment variable {UNSET_KEY} is not set"),
        ("data_pipeline", ["--config", dead], f"GET http://127.0.0.1:{port}/v1/models does not answer"),
        ("data_pipeline", ["--config", bad_record], f"{records}:2: field 'prompt'"),
        ("data_pipeline.audit", ["--input", str(tmp / "missing.jsonl"), "--output", str(tmp / "a.json")],
         f"{tmp / 'missing.jsonl'}: No such file or directory"),
        ("eval", ["--config", write_yaml(tmp / "eval.yaml", {**eval_config, "modles": []})], "modles"),
        ("eval.compare", [str(tmp / "no_run")], f"{tmp / 'no_run' / 'results.json'}: not found"),
        ("train.sft", ["--config", str(REPO_ROOT / "configs/train/tiny-qwen3/sft_lora.yaml"), "--learning_rate", "x"],
         "argument --learning_rate/--learning-rate: invalid float value: 'x' (see --help)"),
        ("train.dpo", ["--config", str(REPO_ROOT / "configs/train/tiny-qwen3/dpo_lora.yaml"),
                       "--dataset_name", str(tmp / "no_dpo")], f"dataset_name: {tmp / 'no_dpo'}: no such folder"),
        ("train.merge", ["--adapter", str(tmp / "no_adapter"), "--output", str(tmp / "merged")],
         f"{tmp / 'no_adapter' / 'adapter_config.json'}: not a PEFT adapter folder"),
        ("train.tiny_models", ["--out", str(not_a_folder)], f"{not_a_folder}: exists and is not a folder (--out)"),
        ("benchmarks.classify", ["--release", str(tmp / "no.csv")], f"{tmp / 'no.csv'}: no such file (--release"),
        ("benchmarks.dedup", ["--n", "0"], "--n: must be >= 1, got 0"),
        ("benchmarks.llm_client", ["--concurrency", "0"], "--concurrency: must be >= 1, got 0"),
        ("benchmarks.train_throughput", ["--gpu"], "--gpu needs --model (deepseek-r1-distill-qwen-7b or qwen3-8b)"),
    ]  # fmt: skip


def plan_cases(tmp) -> list[tuple[str, list[str], str]]:
    recipe = ["--config", str(REPO_ROOT / "configs/train/qwen3-8b/dpo_lora.yaml"), "--rows", "1500"]
    return [
        ("train.plan", ["--config", str(tmp / "gone.yaml"), "--rows", "1500", "--gpus", "8"],
         f"{tmp / 'gone.yaml'}: No such file or directory"),
        ("train.plan", [*recipe, "--gpus", "0"], "--gpus: must be >= 1, got 0"),
        ("train.plan", [*recipe, "--gpus", "12"], "dpo_lora.yaml: recipe: global_batch_size 32 is not a multiple of"),
    ]  # fmt: skip


@pytest.fixture
def in_process(capsys, monkeypatch):
    """Run ``python -m MODULE ARGS`` in this process: the module's ``__main__`` block, which calls run_command as the
    entry point does. Returns (exit code, stderr)."""
    monkeypatch.delenv(UNSET_KEY, raising=False)

    def run(module: str, args: list[str]) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", [module, *args])
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before (by a test)
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exit_:
                code = exit_.code
        return code, capsys.readouterr().err

    return run


def assert_one_error_line(module: str, code: int, stderr: str, expected: str) -> None:
    """Exit code 2; the error is the last line and the only one: before it, at most the progress of stages that ran
    (a bad record is found by stage 1); no traceback, no warning, no usage dump."""
    assert code == 2, (module, stderr[-3000:])
    assert "Traceback" not in stderr, (module, stderr[-3000:])
    *progress, error = stderr.strip().splitlines()
    assert all(" stage " in line or ": done in " in line for line in progress), (module, stderr)
    assert error.startswith(f"python -m {module}: error: "), (module, stderr)
    assert expected in error, (module, stderr)


def test_every_command_reports_a_user_error_in_one_line_with_exit_code_2(tmp_path, in_process):
    table = cases(tmp_path)
    assert len({module for module, _, _ in table}) == 12  # every command the issue lists
    stderrs = []
    for module, args, expected in table:
        code, stderr = in_process(module, args)
        assert_one_error_line(module, code, stderr, expected)
        stderrs.append(stderr)
    preflight_stops = [err for err in stderrs if "preflight of" in err]  # stopped before stage 1
    assert len(preflight_stops) == 3 and all(len(err.strip().splitlines()) == 1 for err in preflight_stops)


def test_train_plan_reports_a_missing_recipe_and_a_bad_gpu_count_in_one_line(tmp_path, in_process):
    for module, args, expected in plan_cases(tmp_path):
        code, stderr = in_process(module, args)
        assert code == 2, stderr[-3000:]
        (line,) = stderr.strip().splitlines()  # no traceback, no usage dump
        assert line.startswith("python -m train.plan: error: ") and expected in line, line


def test_debug_and_loglevel_debug_add_the_traceback(tmp_path, in_process, monkeypatch):
    missing = str(tmp_path / "missing.yaml")
    for extra_args, env in ((["--debug"], {}), ([], {"LOGLEVEL": "DEBUG"})):
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            code, stderr = in_process("data_pipeline", ["--config", missing, *extra_args])
        assert code == 2
        assert "Traceback (most recent call last)" in stderr and "FileNotFoundError" in stderr
        assert (
            stderr.strip().splitlines()[-1] == f"python -m data_pipeline: error: {missing}: No such file or directory"
        )


@pytest.mark.slow
def test_each_entry_point_in_its_own_process_exits_2_with_one_error_line(tmp_path):
    """The smoke test of the real thing: one case per command, as a subprocess (exit code, stderr, no warning)."""
    table = list({module: (module, args, expected) for module, args, expected in
                  reversed(cases(tmp_path) + plan_cases(tmp_path))}.values())  # fmt: skip
    assert len(table) == len(COMMANDS)
    env = {key: value for key, value in os.environ.items() if key != UNSET_KEY}

    def run(case):
        return subprocess.run([sys.executable, "-m", case[0], *case[1]], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    with ThreadPoolExecutor(max_workers=3) as pool:
        procs = list(pool.map(run, table))
    for (module, _, expected), proc in zip(table, procs, strict=True):
        assert_one_error_line(module, proc.returncode, proc.stderr, expected)


COMMANDS = [
    "data_pipeline.__main__",
    "data_pipeline.audit",
    "eval.__main__",
    "eval.compare",
    "train.sft",
    "train.dpo",
    "train.merge",
    "train.tiny_models",
    "train.plan",
    "benchmarks.classify",
    "benchmarks.dedup",
    "benchmarks.llm_client",
    "benchmarks.train_throughput",
]
CONFIG_COMMANDS = {
    "data_pipeline.__main__": "data",
    "eval.__main__": "eval",
    "train.sft": "train",
    "train.dpo": "train",
}


@pytest.mark.parametrize("module", COMMANDS)
def test_help_opens_with_the_purpose_and_an_example(module, capsys):
    import importlib

    from core.cli import run_command

    entry = importlib.import_module(module)
    assert run_command(lambda argv: 0, entry.COMMAND, entry.make_parser, ["--help"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == entry.COMMAND.purpose and len(printed[0]) <= 120  # one line
    assert printed[2] == "example:" and printed[3] == f"  {entry.COMMAND.example}"
    assert any(line.startswith("usage:") for line in printed) and any("--debug" in line for line in printed)
    if module in CONFIG_COMMANDS:
        assert "--config configs/" in printed[3] and any("--check" in line for line in printed)


@pytest.mark.parametrize("module", sorted(CONFIG_COMMANDS))
def test_no_arguments_says_a_yaml_carries_everything(module, capsys):
    import importlib

    from core.cli import run_command

    entry = importlib.import_module(module)
    assert run_command(lambda argv: 0, entry.COMMAND, entry.make_parser, []) == 2
    said = capsys.readouterr().err.strip()
    assert "\n" not in said and "one YAML carries every setting of a run" in said
    examples = sorted(
        p.relative_to(REPO_ROOT) for p in (REPO_ROOT / "configs" / CONFIG_COMMANDS[module]).rglob("*.yaml")
    )
    assert said.endswith("Example configs: " + ", ".join(map(str, examples)))


def test_bitsandbytes_optional_kernel_warning_is_silenced(caplog):
    """bitsandbytes logs this on CPUs with AVX512-BF16 when the optional package 'kernels' is missing (its plain CPU
    path works); importing any of our packages installs the filter, other bitsandbytes warnings still show."""
    import logging

    import train  # noqa: F401 - the package __init__ installs the filter

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
            "`pip install kernels` and the kernels >= 0.11.1",
            "No module named 'kernels'",
        )
        logger.warning("a warning that concerns the user")
    assert [record.getMessage() for record in caplog.records] == ["a warning that concerns the user"]


@pytest.mark.parametrize("qualified", sorted(__import__("core.cli").cli.USER_ERROR_NAMES))
def test_every_user_error_name_is_a_real_exception_class(qualified):
    # cli.py matches user errors by qualified name (it imports none of them): a class moved to another module would
    # silently turn its one-line error back into a traceback, as data_pipeline.importers.InputError once did.
    import importlib

    module, _, name = qualified.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), name), BaseException)
