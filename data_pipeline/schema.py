"""The one row schema every stage of the data pipeline reads and writes.

A row is a prompt with its cultural labels and where it came from. Later stages add columns (candidates, judge
scores, preference pairs); they never rename or drop these.
"""

from datasets import Dataset, Features, List, Value

ORIGIN_ORIGINAL = "original"
ORIGIN_EXPANDED = "expanded"

ROW_FEATURES = Features(
    {
        "id": Value("string"),  # stable, unique within a dataset; importers derive it from source + line
        "prompt": Value("string"),
        "subdomains": List(Value("int32")),  # taxonomy ids; multi-label; [41] = None
        "source": Value("string"),  # e.g. "seed", "culturax_release:CulturaX.csv", "hf:org/name:split"
        "responses": List(Value("string")),  # responses an importer provided (may be empty)
        "origin": Value("string"),  # ORIGIN_ORIGINAL or ORIGIN_EXPANDED
        "parents": List(Value("string")),  # ids of the few-shot examples an expanded prompt was written from
        "generator": Value("string"),  # model that wrote an expanded prompt; "" for original prompts
    }
)


def make_row(
    id: str,
    prompt: str,
    subdomains: list[int],
    source: str,
    responses: list[str] | None = None,
    origin: str = ORIGIN_ORIGINAL,
    parents: list[str] | None = None,
    generator: str = "",
) -> dict:
    return {
        "id": id,
        "prompt": prompt,
        "subdomains": list(subdomains),
        "source": source,
        "responses": list(responses or []),
        "origin": origin,
        "parents": list(parents or []),
        "generator": generator,
    }


def rows_to_dataset(rows: list[dict]) -> Dataset:
    return Dataset.from_list(rows, features=ROW_FEATURES)
