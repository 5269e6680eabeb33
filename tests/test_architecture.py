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
