"""The audit: exact numbers on a constructed file, leakage on saved splits, and real findings on the release."""

import json

import numpy as np
import pytest

from data_pipeline.audit import MISMATCH_THRESHOLD, main
from data_pipeline.schema import make_row, rows_to_dataset

KYOTO = (
    "I am travelling to Kyoto in April and would love to see a traditional Noh theatre performance. Which theatres "
    "stage Noh for visitors, how long does a show last, and is there any etiquette I should follow inside?"
)
KYOTO_EDITED = KYOTO.replace("would love", "would like")  # SimHash distance 7, same 4-grams almost everywhere
RED_ENVELOPES = "What is the meaning of the red envelopes given at Chinese New Year?"
ROWS = [
    make_row("r1", RED_ENVELOPES, [15], "t", ["Red envelopes (hongbao) hold money given at New Year for good luck."]),
    make_row("r2", RED_ENVELOPES, [15], "t", ["Hongbao carry wishes of prosperity for the Chinese New Year."]),
    make_row("r3", RED_ENVELOPES, [15], "t"),  # no responses: not scored
    make_row("r4", KYOTO, [20], "t", ["Kyoto's Kanze Noh Theatre stages Noh; shows last hours; stay quiet."]),
    make_row("r5", KYOTO_EDITED, [20], "t", ["Kanze and Kongo theatres in Kyoto hold Noh plays; keep silent."]),
    make_row(
        "r6",
        "How is sumo wrestling connected to Shinto rituals in Japan?",
        [14],
        "t",
        ["To bake sourdough bread, feed your starter the night before and proof the dough slowly in the fridge."],
    ),
    make_row(
        "r7",
        "What are the origins of flamenco dancing in Andalusia?",
        [21, 15],
        "t",
        ["Change your car's engine oil every ten thousand kilometres and check the tyre pressure monthly."],
    ),
    make_row(
        "r8",
        "Which dishes should I try at a Turkish breakfast?",
        [11],
        "t",
        ["Kahvalti brings cheeses, olives, tomatoes, simit, eggs with sucuk and black tea."],
    ),
]


def by_id(*ids):
    return [row for row in ROWS if row["id"] in ids]


def run_audit(tmp_path, *args):
    output = tmp_path / "report.json"
    report = main(["--output", str(output), *args])
    assert json.loads(output.read_text(encoding="utf-8")) == json.loads(json.dumps(report))
    return report


def test_constructed_file_gives_exact_numbers(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS) + "{broken\n", encoding="utf-8")
    report = run_audit(tmp_path, "--input", str(path))  # format from the suffix
    assert report["rows"] == 8
    assert report["exact_duplicate_rows"] == 2 and report["exact_duplicate_ids"] == ["r2", "r3"]
    assert (report["near_duplicate_pairs"], report["near_duplicate_pairs_unverified"]) == (1, 0)
    assert report["near_duplicate_examples"] == [[KYOTO, KYOTO_EDITED]]
    assert report["subdomain_counts"] == {"11": 1, "14": 1, "15": 4, "20": 2, "21": 1}
    assert report["imbalance_ratio"] == 4.0
    assert report["cross_split_leakage"] is None
    mismatch = report["response_mismatch"]
    assert (mismatch["count"], mismatch["ids"], mismatch["scored_rows"]) == (2, ["r7", "r6"], 7)
    assert mismatch["threshold"] == MISMATCH_THRESHOLD and mismatch["model"].endswith("all-MiniLM-L6-v2")
    assert [(s["file"], s["line"], s["field"]) for s in report["skipped"]] == [(str(path), 9, "(json)")]
    printed = capsys.readouterr().out
    assert "exact duplicate rows" in printed and "2 of 7" in printed


def test_pipeline_output_folder_reports_cross_split_leakage(tmp_path):
    import datasets

    splits = datasets.DatasetDict(
        train=rows_to_dataset(by_id("r1", "r4", "r6")),
        validation=rows_to_dataset(by_id("r8")),
        test=rows_to_dataset(by_id("r5", "r7")),  # r5 is a near duplicate of r4 in train
    )
    splits.save_to_disk(str(tmp_path / "out" / "dataset"))
    report = run_audit(tmp_path, "--input", str(tmp_path / "out"))
    assert report["rows"] == 6
    assert report["cross_split_leakage"]["pairs"] == 1
    assert report["near_duplicate_pairs"] == 1

    clean = datasets.DatasetDict(train=rows_to_dataset(by_id("r1", "r4", "r5")), test=rows_to_dataset(by_id("r6")))
    clean.save_to_disk(str(tmp_path / "clean"))
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    report = run_audit(tmp_path, "--input", str(path), "--format", "jsonl", "--splits-dir", str(tmp_path / "clean"))
    assert report["rows"] == 8 and report["cross_split_leakage"]["pairs"] == 0


def test_a_quote_that_never_closes_is_a_counted_skip_not_a_swallowed_row(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(
        b"prompt,subdomains\r\n"
        b'"What is Holi?,15\r\n'  # before strict parsing: one row whose prompt swallowed the next line
        b'"What is Songkran?",19\r\n'
        b'"Caf\xe9 culture in Vienna?",11\r\n'
    )
    report = run_audit(tmp_path, "--input", str(path))
    assert report["rows"] == 2 and report["subdomain_counts"] == {"11": 1, "19": 1}  # Songkran is read again
    assert report["skipped"] == [
        {"file": str(path), "line": 2, "field": "(csv)", "reason": "malformed quoting on line 3 (',' expected after "
         "'\"'): a quote opened on line 2 swallows the lines after it"},
    ]  # fmt: skip
    assert report["sources"][0]["encoding"] == "cp1252"


def test_bad_input_can_stop_the_audit(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": ""}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"rows\.jsonl:1: field 'prompt': empty text"):
        run_audit(tmp_path, "--input", str(path), "--on_error", "raise")


@pytest.mark.slow  # embeds the whole release: ~6,000 texts with MiniLM on one thread
def test_release_audit_finds_duplicates_and_mismatched_responses(tmp_path, culturax_release):
    report = run_audit(tmp_path, "--input", str(culturax_release), "--format", "culturax_release")
    assert report["rows"] == 1500 and report["skipped"] == []
    assert report["exact_duplicate_rows"] > 0
    assert report["exact_duplicate_rows"] == report["rows"] - report["distinct_prompts"]
    assert len(report["subdomain_counts"]) == 30 and report["imbalance_ratio"] == 387.0
    mismatch = report["response_mismatch"]
    assert mismatch["scored_rows"] == 1500 and mismatch["count"] > 0
    # a casual party with American colleagues answered with the history of salsa (the file's line 4)
    assert "culturax_release:CulturaX.csv:4" in mismatch["ids"]


def test_embeddings_are_offline_normalised_and_semantic():
    from data_pipeline.embeddings import EMBEDDING_DIM, embed

    vectors = embed(["How is kimchi made?", "What goes into making kimchi?", "How do I change a car tyre?"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert embed([]).shape == (0, EMBEDDING_DIM)


def test_built_culturax_scores_chosen_and_rejected(tmp_path, capsys, monkeypatch):
    """A pipeline output folder has no importer responses; its judged chosen/rejected responses are what is scored.
    Expected: chosen on topic for all 4 rows (0 of 4); rejected given for 3 rows (r4 has no pair), one of them the
    sourdough recipe as the rejected answer to the Turkish-breakfast question (1 of 3: cosine below 0.25)."""
    import datasets

    from data_pipeline import embeddings

    embedded: list[list[str]] = []
    embed = embeddings.embed
    monkeypatch.setattr(embeddings, "embed", lambda texts, **kw: embedded.append(list(texts)) or embed(texts, **kw))
    rows = [{**row, "responses": []} for row in by_id("r1", "r2", "r4", "r8")]
    chosen = [ROWS[0]["responses"][0], ROWS[1]["responses"][0], ROWS[3]["responses"][0], ROWS[7]["responses"][0]]
    rejected = [ROWS[1]["responses"][0], ROWS[0]["responses"][0], "", ROWS[5]["responses"][0]]  # r8 <- sourdough
    split = rows_to_dataset(rows).add_column("chosen", chosen).add_column("rejected", rejected)
    datasets.DatasetDict(train=split.select([0, 1, 2]), test=split.select([3])).save_to_disk(
        tmp_path / "out" / "dataset"
    )
    report = run_audit(tmp_path, "--input", str(tmp_path / "out"))
    # Both columns score the same prompts: one call embeds every distinct text once, 3 prompts (r1 and r2 share
    # one), the 4 chosen responses and the sourdough recipe (the other rejected responses are chosen ones).
    assert len(embedded) == 1 and len(embedded[0]) == len(set(embedded[0])) == 3 + 4 + 1, embedded
    assert report["response_mismatch"]["scored_rows"] == 0
    assert (report["response_mismatch_chosen"]["count"], report["response_mismatch_chosen"]["scored_rows"]) == (0, 4)
    rejected_report = report["response_mismatch_rejected"]
    assert (rejected_report["count"], rejected_report["ids"], rejected_report["scored_rows"]) == (1, ["r8"], 3)
    printed = capsys.readouterr().out
    assert (
        "chosen mismatch" in printed and "0 of 4" in printed and "rejected mismatch" in printed and "1 of 3" in printed
    )
