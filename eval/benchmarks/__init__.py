"""The cultural multiple-choice benchmarks through lm-evaluation-harness: tasks, sampling, languages, outcomes."""
