"""The docs say what the scripts do: every AC_* variable the scripts read from the environment is documented."""

import re

from tests.conftest import REPO_ROOT

# An environment read: ${AC_X:-default} / ${AC_X:+...} in shell, os.environ.get("AC_X") / os.environ["AC_X"] in Python.
ENV_READ = re.compile(r"\$\{(AC_[A-Z0-9_]+):?[-+=?]|environ(?:\.get\(|\[)\s*[\"'](AC_[A-Z0-9_]+)[\"']")
SCRIPTS = ["slurm", "data_pipeline", "train", "eval", "benchmarks"]


def variables_read() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder in SCRIPTS:
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.suffix in (".sh", ".sbatch", ".py") and path.is_file():
                for match in ENV_READ.finditer(path.read_text(encoding="utf-8")):
                    found.setdefault(match.group(1) or match.group(2), set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def test_every_ac_variable_the_scripts_read_is_documented():
    read = variables_read()
    # the variables issue 14 found undocumented, and the classic ones: the scan must see them all
    issue_14 = {"AC_VLLM", "AC_VLLM_ARGS", "AC_VLLM_TIMEOUT_S", "AC_SERVE_LOG_DIR", "AC_REPO", "AC_MASTER_ADDR"}
    classic = {"AC_VENV", "AC_MODULES", "AC_ENV_SETUP", "AC_ACCELERATE_CONFIG", "AC_MASTER_PORT", "AC_DRY_RUN"}
    assert issue_14 | classic <= set(read)
    table = (REPO_ROOT / "slurm" / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(AC_[A-Z0-9_]+)` \|", table, re.M))
    missing = {name: sorted(files) for name, files in read.items() if name not in documented}
    assert not missing, f"AC_* variables read but not in slurm/README.md's table: {missing}"


def test_every_documented_command_exists():
    """Each `python -m X` / `-m X` the README shows is a runnable module (a package with __main__, or a module with a
    __main__ block) and each `make X` a Makefile target: a move inside the code must not break what users type."""
    import importlib.util

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    modules = set(re.findall(r"(?:python -m|\s-m) ([a-z_][a-z_0-9.]*[a-z_0-9])", readme))
    assert {"data_pipeline", "eval", "train.sft", "data_pipeline.llm.local_server", "tests.import_graph"} <= modules
    for module in sorted(modules):
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"README runs python -m {module}: no such module"
        if spec.submodule_search_locations:  # a package: python -m runs its __main__
            assert importlib.util.find_spec(f"{module}.__main__") is not None, module
        elif spec.origin and spec.origin.startswith(str(REPO_ROOT)):
            assert 'if __name__ == "__main__":' in open(spec.origin, encoding="utf-8").read(), module
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO_ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
    documented = set(re.findall(r"(?:^|`)make ([a-z][a-z0-9-]*)", readme, re.M))  # commands, not prose
    assert {"demo", "test", "test-fast", "imports"} <= documented and documented <= targets, documented - targets
