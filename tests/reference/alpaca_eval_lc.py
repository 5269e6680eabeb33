"""Prints alpaca_eval's own length-controlled win rates on the verdicts of tests/reference/lc_cases.py: the numbers
tests/test_length_control.py and tests/test_eval.py pin (LIBRARY, E2E_LIBRARY). Not a test (pytest never collects it).

Run it from the repository root with a scratch venv that holds alpaca-eval 0.6.6 (not this project's pins):

    python3 -m venv /tmp/ae-venv
    /tmp/ae-venv/bin/pip install scikit-learn==1.9.1 pandas==3.1.1 numpy==2.3.5 scipy==1.17.1 patsy==1.0.3 \
        datasets==5.2.0 openai==3.57.0 tiktoken fire termcolor python-dotenv huggingface_hub
    /tmp/ae-venv/bin/pip install --no-deps alpaca-eval==0.6.6
    /tmp/ae-venv/bin/python -m tests.reference.alpaca_eval_lc

``get_length_controlled_winrate`` downloads df_gamed.csv from the hub for every GLM (the minimal one too); here its
``hf_hub_download`` returns the stand-in this script writes from lc_cases (the real file is never needed). The
annotations are what alpaca_eval's annotators write: ``preference`` 1 + (the model's answer better: 0..1),
``output_1`` the reference, ``output_2`` the model's answer (strings of their lengths), AlpacaEval's ``index``.
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from alpaca_eval.metrics import glm_winrate

from tests.reference import lc_cases


def library_lc(scores, answer_chars, reference_chars, glm_name: str, index=None) -> tuple[float, float]:
    """(raw win rate, LC win rate) as alpaca_eval computes them; ``index``: AlpacaEval's instruction indices (default
    0, 1, 2, ...)."""
    annotations = pd.DataFrame(
        {
            "preference": 1.0 + np.asarray(scores, float),
            "output_1": ["x" * int(c) for c in reference_chars],
            "output_2": ["y" * int(c) for c in answer_chars],
            "index": np.arange(len(scores)) if index is None else index,
            "generator_1": "reference",
            "generator_2": "model",
            "annotator": "judge",
        }
    )
    metrics = glm_winrate.get_length_controlled_winrate(
        annotations, glm_name=glm_name, save_weights_dir=None, is_warn_extreme_changes=False
    )
    return float(metrics["win_rate"]), float(metrics["length_controlled_winrate"])


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        df_gamed = Path(folder) / "df_gamed.csv"
        lc_cases.write_df_gamed(df_gamed)
        glm_winrate.hf_hub_download = lambda **kwargs: str(df_gamed)  # the stand-in, not the hub
        print("LIBRARY = {")
        for kind in lc_cases.KINDS:
            for longer in lc_cases.LONGER:
                scores, answer, reference = lc_cases.synthetic(kind, longer)
                for n in lc_cases.SIZES:
                    for glm in lc_cases.GLMS:
                        values = library_lc(scores[:n], answer[:n], reference[:n], glm)
                        print(f"    ({kind!r}, {longer}, {n}, {glm!r}): {values},")
        print("}")
        print("EDGE_LIBRARY = {")
        for name, (scores, answer, reference, index) in lc_cases.edge_cases().items():
            for glm in lc_cases.GLMS:
                print(f"    ({name!r}, {glm!r}): {library_lc(scores, answer, reference, glm, index)},")
        print("}")
        print("E2E_LIBRARY = {")
        for model, answer in lc_cases.E2E_ANSWER_CHARS.items():
            values = library_lc(lc_cases.E2E_SCORES, answer, lc_cases.E2E_REFERENCE_CHARS, lc_cases.GLMS[0])
            print(f"    {model!r}: {values},")
        print("}")


if __name__ == "__main__":
    main()
