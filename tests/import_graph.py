"""The house's import rules, read from the source (every import statement, at module level or inside a function):

    python -m tests.import_graph        (make imports; tests/test_architecture.py asserts the same)

- ``core`` imports no stage; ``data_pipeline`` and ``train`` import ``core`` and themselves only; ``eval`` imports
  ``core``, itself and CULTURAX's own domain from ``data_pipeline`` (``EVAL_MAY_READ``), never ``train``;
- ``eval`` is cut into rooms by job (``EVAL_ROOMS``: hhh, heldout, benchmarks, report): a room imports itself, eval's
  shared modules (``EVAL_SHARED``: config, statistics, decoding presets) and, of another room, only what
  ``EVAL_ROOM_MAY_READ`` lists; no room imports the modules that compose the rooms (``eval.evaluate``, the commands);
  report code reads results and never runs a model or a judge, so of ``core`` and ``data_pipeline`` it imports only
  ``REPORT_MAY_USE``;
- no import loop between modules, counting imports inside functions (a loop that only a lazy import breaks at run
  time is still a loop);
- no module over ``MAX_LINES`` lines.

It prints each package's imports of other packages, then the loops and rule breaks (none: exit 0).
"""

import ast
import sys
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "data_pipeline", "train", "eval", "slurm", "benchmarks")
MAX_LINES = 400
# What each package may import besides itself (slurm/ and benchmarks/ sit on top and may import any stage).
ALLOWED = {
    "core": set(),
    "data_pipeline": {"core"},
    "train": {"core"},
    "eval": {"core", "data_pipeline"},
    "slurm": {"core", "data_pipeline", "train", "eval"},
    "benchmarks": {"core", "data_pipeline", "train"},
}
# CULTURAX's own domain, which eval reads from data_pipeline: the taxonomy, SimHash leakage, the dataset's views.
EVAL_MAY_READ = {"data_pipeline.taxonomy", "data_pipeline.dedup", "data_pipeline.hamming_search", "data_pipeline.views"}
EVAL_ROOMS = ("eval.hhh", "eval.heldout", "eval.benchmarks", "eval.report")
EVAL_SHARED = {"eval", "eval.config", "eval.stats", "eval.decoding", "eval.lm_eval_tasks", "eval.lm_eval_tasks.utils"}
# What a room reads of another: the report's failure types and language table (constants, no model).
EVAL_ROOM_MAY_READ = {"eval.report": {"eval.hhh.metrics", "eval.benchmarks.languages"}}
REPORT_MAY_USE = {"core.publish", "core.llm.stats", "data_pipeline.taxonomy"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if ".venv" not in path.parts
    }


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """First-party modules ``path`` imports anywhere in its body; ``from pkg import name`` counts ``pkg.name`` when
    that is a module, else ``pkg``."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from ..pkg import y
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # "core.llm.base.X" -> "core.llm.base"
                name = name.rpartition(".")[0]
            if name and name != module_name(path):
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def rule_breaks(graph: dict[str, set[str]]) -> list[str]:
    breaks = []
    for source, targets in sorted(graph.items()):
        top = source.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other == top:
                continue
            if other not in ALLOWED[top]:
                breaks.append(f"{source} imports {target}: {top} may import only {sorted(ALLOWED[top]) or 'nothing'}")
            elif top == "eval" and other == "data_pipeline" and target not in EVAL_MAY_READ:
                breaks.append(f"{source} imports {target}: eval reads only CULTURAX's domain {sorted(EVAL_MAY_READ)}")
        if top == "eval":
            breaks += eval_room_breaks(source, targets)
    return breaks


def room_of(module: str) -> str | None:
    return next((room for room in EVAL_ROOMS if module == room or module.startswith(room + ".")), None)


def room_imports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """What each eval room imports of eval outside itself (shared modules, another room's), for the printout."""
    imports = {room: set() for room in EVAL_ROOMS}
    for source, targets in graph.items():
        if (room := room_of(source)) is not None:
            imports[room] |= {t for t in targets if t.startswith("eval") and room_of(t) != room and t != "eval"}
    return imports


def eval_room_breaks(source: str, targets: set[str]) -> list[str]:
    room = room_of(source)
    if room is None:  # the composers (eval.evaluate, the commands) and the shared modules
        return []
    breaks = []
    for target in sorted(targets):
        other = room_of(target)
        if target.startswith("eval") and other != room and target not in EVAL_SHARED:
            if other is None:
                breaks.append(f"{source} imports {target}: a room never imports the modules that compose the rooms")
            elif target not in EVAL_ROOM_MAY_READ.get(room, set()):
                breaks.append(
                    f"{source} imports {target}: {room} reads of other rooms only "
                    f"{sorted(EVAL_ROOM_MAY_READ.get(room, set())) or 'nothing'}"
                )
        elif room == "eval.report" and not target.startswith("eval") and target not in REPORT_MAY_USE:
            breaks.append(
                f"{source} imports {target}: report code reads results, it never runs a model or a judge "
                f"(of core and data_pipeline it uses only {sorted(REPORT_MAY_USE)})"
            )
    return breaks


def long_modules() -> list[str]:
    return [
        f"{path.relative_to(REPO_ROOT)}: {lines} lines (over {MAX_LINES})"
        for path in source_modules().values()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]


def main() -> int:
    graph = import_graph()
    across = defaultdict(set)
    for source, targets in graph.items():
        for target in targets:
            if target.split(".")[0] != source.split(".")[0]:
                across[source.split(".")[0]].add(target)
    for package in PACKAGES:
        print(f"{package} -> {', '.join(sorted(across[package])) or '(nothing of ours)'}")
        if package == "eval":
            for room, targets in room_imports(graph).items():
                print(f"  {room} -> {', '.join(sorted(targets))}")
    problems = [f"import loop: {' <-> '.join(loop)}" for loop in loops(graph)] + rule_breaks(graph) + long_modules()
    for problem in problems:
        print(problem)
    print(f"import_graph: modules={len(graph)} loops={len(loops(graph))} problems={len(problems)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
