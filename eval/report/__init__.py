"""What a run shows: results.json, report.md, tables, plots, W&B. It reads results; it never runs a model or a judge."""
