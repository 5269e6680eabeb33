"""Judged HHH and cultural metrics: test sets, the evaluated models' answers, judges and their verdicts, metric
formulas, AlpacaEval's length control, k samples per prompt."""
