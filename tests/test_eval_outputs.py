"""write_all replaces results.json and report.md only once everything is written, and reports LLM calls.

The report's and plots' content is tested in tests/test_eval.py; here they are stubbed so that a failure can be
injected at the last step before the swap.
"""

import json

import pytest

from core.llm import Sampling, build_llm
from core.llm.base import LLMConfig
from core.llm.local_server import Faults, LocalOpenAIServer
from core.publish import PUBLISHED
from eval.report import write as report


def results(run: int) -> dict:
    return {"samples": {"model": [{"prompt": "p", "response": f"run {run}"}]}, "config": {"report_to": "none"},
            "run": run}  # fmt: skip


def stub_report(monkeypatch, fail: bool = False, plots: tuple[str, ...] = ("hhh.png",)):
    def write_report_md(clean, out):
        (out / "report.md").write_text(f"# report of run {clean['run']}\n", encoding="utf-8")

    def write_plots(clean, out):
        if fail:
            raise OSError("disk full (injected)")
        for plot in plots:
            (out / plot).write_bytes(b"png of run %d" % clean["run"])

    monkeypatch.setattr(report, "write_report_md", write_report_md)
    monkeypatch.setattr(report, "write_plots", write_plots)


def test_a_failed_write_leaves_the_previous_results_whole(tmp_path, monkeypatch):
    stub_report(monkeypatch)
    report.write_all(results(1), str(tmp_path))
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert set(before) == {"results.json", "report.md", "hhh.png", "model.jsonl", PUBLISHED}
    stub_report(monkeypatch, fail=True)
    with pytest.raises(OSError, match="injected"):
        report.write_all(results(2), str(tmp_path))
    assert {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [PUBLISHED]
    assert [p.name for p in tmp_path.parent.glob(f".{tmp_path.name}.*")] == [f".{tmp_path.name}.lock"]  # no staging
    stub_report(monkeypatch)
    report.write_all(results(3), str(tmp_path))
    assert json.loads((tmp_path / "results.json").read_text())["run"] == 3
    assert (tmp_path / "report.md").read_text().startswith("# report of run 3\n")


def test_report_counts_llm_calls_per_role(tmp_path, monkeypatch):
    stub_report(monkeypatch)
    with LocalOpenAIServer(lambda messages, params: "ok", faults=Faults(server_error=1)) as server:
        cfg = LLMConfig(backend="openai", model="scripted", base_url=server.base_url)
        build_llm(cfg, None, "eval-judge").generate([[{"role": "user", "content": "hi"}]], Sampling(), n=2)
    report.write_all(results(1), str(tmp_path))
    calls = json.loads((tmp_path / "results.json").read_text())["llm_calls"]["eval-judge"]
    assert calls == {"calls": 2, "new": 2, "cached": 0, "failures": 0,
                     "retries": {"timeout": 0, "429": 0, "5xx": 1, "connection": 0, "other": 0}}  # fmt: skip
    text = (tmp_path / "report.md").read_text()
    assert "## LLM calls per role (this run)" in text and "| eval-judge | 2 | 2 | 0 | 0 | 0 | 1 | 0 | 0 | 0 |" in text


def test_a_new_output_leaves_no_file_of_the_previous_one_and_keeps_other_writers_files(tmp_path, monkeypatch):
    stub_report(monkeypatch, plots=("hhh.png", "benchmarks.png"))
    first = results(1)
    first["samples"]["other"] = [{"prompt": "p", "response": "only in run 1"}]
    report.write_all(first, str(tmp_path))
    (tmp_path / "wandb").mkdir()  # W&B's run files and a user's note: not the report's, so they stay
    (tmp_path / "wandb" / "run-1.wandb").write_bytes(b"offline run")
    (tmp_path / "notes.txt").write_text("mine")
    stub_report(monkeypatch, plots=("hhh.png",))
    report.write_all(results(2), str(tmp_path))
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    # Run 2 wrote one sample file and one plot: run 1's other.jsonl and benchmarks.png are gone, not left beside them.
    assert files == [PUBLISHED, "hhh.png", "notes.txt", "report.md", "results.json", "samples/model.jsonl",
                     "wandb/run-1.wandb"]  # fmt: skip
    assert (tmp_path / "hhh.png").read_bytes() == b"png of run 2"
