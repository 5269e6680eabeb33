"""AlpacaEval's length-control inputs: ``df_gamed.csv`` from the tatsu-lab/alpaca_eval hub dataset (Apache-2.0; Dubois
et al., 2024), what ``alpaca_eval.metrics.glm_winrate`` downloads for every GLM.

Its rows are the annotations of two length-gamed versions of the baseline (``gpt4_1106_preview_verbose`` and
``gpt4_1106_preview_concise``) on AlpacaEval 2.0's 805 instructions, with columns ``model``, ``index`` (the
instruction's position in alpaca_eval_gpt4_baseline.json), ``preference`` (0..1: the gamed answer better),
``std_delta_len`` (the length difference, standardised), ``instruction_difficulty`` and ``not_gamed_baseline``. The
instruction difficulty is read from each index's first row, as the library reads it (by row position: so the first
rows must be indices 0, 1, 2, ... in order, which is checked).

``length_control_data`` names a local copy or the hub dataset itself (``tatsu-lab/alpaca_eval``, downloaded once
with huggingface_hub at ``length_control_revision`` into the Hugging Face cache).
"""

import csv
from dataclasses import dataclass

import numpy as np

from eval.hhh.testsets import is_local_source

FILENAME = "df_gamed.csv"
FIELDS = ("model", "index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline")
BOOLEANS = {"true": 1.0, "false": 0.0}
HOW_TO_GET = (
    f"get it once: `huggingface-cli download tatsu-lab/alpaca_eval {FILENAME} --repo-type dataset --local-dir DIR` "
    f"and set length_control_data: DIR/{FILENAME}, or keep length_control_data: tatsu-lab/alpaca_eval and run once "
    "with the hub reachable"
)


@dataclass(frozen=True)
class GlmData:
    """df_gamed.csv, as the GLM uses it."""

    difficulty: np.ndarray  # by AlpacaEval instruction index
    # (rows, 4): preference in [0, 1], std_delta_len, instruction_difficulty, not_gamed_baseline (1.0 / 0.0); in the
    # file's order, which the library's fit keeps (it is part of liblinear's and GroupKFold's input)
    gamed: np.ndarray


def read_glm_data(path: str) -> GlmData:
    """A local df_gamed.csv, every row checked (one line naming file, line and field on the first bad one)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}:1: field '{missing[0]}': column missing (expected alpaca_eval's {FILENAME})")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}:2: field '<row>': no rows")
    difficulty: list[float] = []
    gamed = []
    for line, row in enumerate(rows, start=2):
        values = []
        for name in FIELDS[1:5]:
            try:
                values.append(int(row[name]) if name == "index" else float(row[name]))
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: field '{name}': not a number: {row[name]!r}") from None
        index, preference, std_delta_len, instruction_difficulty = values
        if not 0.0 <= preference <= 1.0:
            raise ValueError(f"{path}:{line}: field 'preference': {preference} is outside 0..1")
        not_gamed = BOOLEANS.get(str(row["not_gamed_baseline"]).strip().lower())
        if not_gamed is None:
            raise ValueError(f"{path}:{line}: field 'not_gamed_baseline': expected True or False, got "
                             f"{row['not_gamed_baseline']!r}")  # fmt: skip
        if index == len(difficulty):
            difficulty.append(instruction_difficulty)
        elif not 0 <= index < len(difficulty):
            raise ValueError(f"{path}:{line}: field 'index': {index} where instruction {len(difficulty)} comes next "
                             "(the first rows list every instruction once, in order)")  # fmt: skip
        gamed.append([preference, std_delta_len, instruction_difficulty, not_gamed])
    return GlmData(np.array(difficulty), np.array(gamed))


def resolve(source: str, revision: str | None) -> str:
    """The local path of ``length_control_data``: the file itself, or the hub dataset's copy at ``revision``."""
    if is_local_source(source):
        return source
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id=source, filename=FILENAME, repo_type="dataset", revision=revision)


def glm_data_of(cfg) -> GlmData | None:
    """The config's ``length_control_data`` (AlpacaEval's df_gamed.csv), or None: no difficulty, minimal GLM."""
    if not cfg.length_control_data:
        return None
    return read_glm_data(resolve(cfg.length_control_data, cfg.length_control_revision))


def instruction_indices(ids, glm: GlmData) -> np.ndarray:
    """Each prompt's AlpacaEval instruction index, read from its id ("alpaca_eval-0042")."""
    index = np.array([int(str(i).rsplit("-", 1)[1]) for i in ids])
    if index.max(initial=-1) >= len(glm.difficulty):
        raise ValueError(f"length_control_data: no difficulty for instruction {index.max()} (the file has "
                         f"{len(glm.difficulty)}): it is not the {FILENAME} of this AlpacaEval set")  # fmt: skip
    return index
