"""A failed or killed rerun cannot destroy a good build; the call cache keeps what the failed run paid for; the card
and stats.json say what was skipped, in which encoding each source was read, and every role's calls and retries."""

import json
from pathlib import Path

import pytest
import yaml

from core.llm.local_server import Faults, LocalOpenAIServer
from core.publish import COMPLETE, PUBLISHED, output_lock
from data_pipeline.config import parse_config
from data_pipeline.importers import InputError
from data_pipeline.pipeline import run_pipeline
from tests.conftest import REPO_ROOT
from tests.test_pipeline import counting_generations, kill_9_mid_generation, server_config


def snapshot(output_dir: Path) -> dict[str, bytes]:
    """Every file of a build (the call cache aside) and its bytes."""
    return {str(p.relative_to(output_dir)): p.read_bytes() for p in sorted(output_dir.rglob("*"))
            if p.is_file() and "llm_cache" not in p.parts}  # fmt: skip


def leftovers(output_dir: Path) -> list[str]:
    """What a run left beside output_dir: staging folders, an owner record (the lock file itself stays, by design)."""
    beside = (p.name for p in output_dir.parent.iterdir() if p.name.startswith(f".{output_dir.name}."))
    return [name for name in beside if name != f".{output_dir.name}.lock"]


def seed_only(tmp_path: Path, *overrides: str) -> dict:
    """The seed-only build without its classify stage (the importer's labels stand): seconds, not minutes."""
    args = ["--config", str(REPO_ROOT / "configs/data/seed_only.yaml"), "--output_dir", str(tmp_path / "out"),
            "--stages", "import", "dedup", "split"]  # fmt: skip
    return run_pipeline(parse_config([*args, *overrides]))


def test_a_rerun_that_fails_on_a_bad_source_leaves_the_previous_build_untouched(tmp_path):
    seed_only(tmp_path)
    out = tmp_path / "out"
    before = snapshot(out)
    assert {"manifest.json", "stats.json", "README.md", "dataset/dataset_dict.json"} <= set(before)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'prompt,subdomains\r\n"What is Holi?,15\r\n"What is Songkran?",19\r\n')
    with pytest.raises(InputError, match=r"bad\.csv:2: field '\(csv\)': malformed quoting on line 3"):
        seed_only(tmp_path, "--sources.0.format", "csv", "--sources.0.path", str(bad))
    assert snapshot(out) == before  # manifest included, byte for byte
    assert leftovers(out) == []  # the failed run's staging folder is gone


def test_skipped_rows_and_encodings_reach_stats_and_card(tmp_path):
    source = tmp_path / "mixed.csv"
    source.write_bytes(
        b"prompt,subdomains\r\n"
        b'"Caf\xe9 culture in Vienna?",11\r\n'  # cp1252: detected, recorded
        b'"What is\x00 Holi?",15\r\n'  # NUL: skipped
        b'"What is Songkran?",19,extra\r\n'  # three fields: skipped
        b'"What is Nowruz?",15\r\n'
    )
    stats = seed_only(
        tmp_path, "--sources.0.format", "csv", "--sources.0.path", str(source), "--sources.0.on_error", "skip"
    )
    assert stats["import"]["skipped_rows"] == 2
    assert stats["import"]["sources"] == [{"source": "csv:mixed.csv", "format": "csv", "path": str(source),
                                           "encoding": "cp1252", "rows": 2, "skipped": 2}]  # fmt: skip
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| `csv:mixed.csv` | csv | cp1252 | 2 | 2 |" in card
    assert "2 input records were skipped (`on_error: skip`) and are not in this dataset:" in card
    assert "- `mixed.csv` line 3, field `prompt`: control character U+0000 at character 8 (column 'prompt')" in card
    assert "- `mixed.csv` line 4, field `(csv)`: 3 fields; the header has 2" in card


def test_an_interrupted_swap_is_finished_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    (out / "dataset").mkdir(parents=True)
    (out / "dataset" / "old").write_text("old")
    (out / "manifest.json").write_text("old manifest")
    (out / "llm_cache").mkdir()
    staging = tmp_path / ".out.incomplete-otherhost-1"
    (staging / "dataset").mkdir(parents=True)
    (staging / "dataset" / "new").write_text("new")
    (staging / "manifest.json").write_text("new manifest")
    journal = {"entries": ["dataset", "manifest.json"], "last": ["manifest.json"]}
    (staging / COMPLETE).write_text(json.dumps(journal))  # committed, then the process died
    with output_lock(out):  # the next run's lock finishes the swap before anything else
        assert sorted(p.name for p in out.iterdir()) == [PUBLISHED, "dataset", "llm_cache", "manifest.json"]
        assert (out / "manifest.json").read_text() == "new manifest" and (out / "dataset" / "new").exists()
        assert not (out / "dataset" / "old").exists() and not staging.exists()
    assert leftovers(out) == []


@pytest.mark.slow
def test_a_rerun_killed_mid_generation_leaves_the_build_and_keeps_the_paid_calls(tmp_path):
    generated = []
    faults = Faults(delay_s=0.05, server_error=3, rate_limit=2, drop=1, retry_after_s=0.05)
    with LocalOpenAIServer(counting_generations(generated), faults=faults) as server:
        config = server_config(server.base_url, tmp_path, "out")
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        first = run_pipeline(parse_config(["--config", str(path)]))
        out = Path(config["output_dir"])
        before = snapshot(out)
        cache_before = len(list((out / "llm_cache").glob("??/*.json")))
        # The rerun samples new candidates (another generate seed): new calls, then SIGKILL in the middle of them.
        kill_9_mid_generation(path, generated, "--generate.seed", "7")
        assert snapshot(out) == before  # the previous build, manifest included, byte for byte
        paid = len(list((out / "llm_cache").glob("??/*.json"))) - cache_before
        assert paid >= 12 - 4  # every finished call of the killed run is in the cache (<= 4 were in flight)
        # Its staging folder and its owner record (SIGKILL: no clean-up ran), both cleared by the next run.
        killed = leftovers(out)
        assert len(killed) == 2 and ".out.owner" in killed and any(n.startswith(".out.incomplete-") for n in killed)
        again = run_pipeline(parse_config(["--config", str(path), "--generate.seed", "7"]))
    assert leftovers(out) == []
    assert again["llm_calls"]["generator"]["cached"] >= paid
    # The first run met every injected fault, and its stats say so by cause.
    retries = {cause: sum(c["retries"][cause] for c in first["llm_calls"].values()) for cause in ("429", "5xx")}
    assert retries == {"429": 2, "5xx": 3}
    assert sum(c["retries"]["connection"] for c in first["llm_calls"].values()) == 1
    assert "## LLM calls per role (this run)" in (out / "README.md").read_text()
