"""The house's rules hold (tests/import_graph.py reads every import statement of our packages)."""

from tests import import_graph


def test_no_import_loops_and_each_stage_imports_only_what_is_below_it():
    graph = import_graph.import_graph()
    assert import_graph.loops(graph) == []
    assert import_graph.rule_breaks(graph) == []
    assert "train" not in {
        target.split(".")[0] for source, t in graph.items() if source.startswith("eval") for target in t
    }


def test_no_module_over_the_line_cap():
    assert import_graph.long_modules() == []


def test_the_checker_sees_a_loop_a_lazy_import_hides_and_a_forbidden_edge():
    """A function-level import closing a loop counts; eval importing train is refused (a checker that cannot fail
    would pass these)."""
    graph = {"train.a": {"train.b"}, "train.b": {"train.a"}, "eval.x": {"train.sft", "data_pipeline.config"}}
    assert import_graph.loops(graph) == [["train.a", "train.b"]]
    breaks = import_graph.rule_breaks(graph)
    assert any("eval.x imports train.sft" in b for b in breaks)
    assert any("eval.x imports data_pipeline.config" in b for b in breaks)


def test_the_checker_keeps_evals_rooms_apart():
    """A room importing the composer or another room's model code, and report code reaching for a model, are refused;
    the report reading the failure types (a constant) and any room reading the shared statistics are not."""
    graph = {
        "eval.hhh.judges": {"eval.evaluate", "eval.stats", "eval.config"},
        "eval.heldout.scoring": {"eval.hhh.generation"},
        "eval.report.write": {"core.llm", "eval.hhh.metrics", "eval.report.tables", "core.publish"},
        "eval.report.plots": {"eval.hhh.judges"},
        "eval.evaluate": {"eval.hhh.judges", "eval.report.write", "core.llm"},
    }
    breaks = import_graph.rule_breaks(graph)
    assert sorted(b.split(":")[0] for b in breaks) == [
        "eval.heldout.scoring imports eval.hhh.generation",
        "eval.hhh.judges imports eval.evaluate",
        "eval.report.plots imports eval.hhh.judges",
        "eval.report.write imports core.llm",
    ]
