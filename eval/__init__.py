"""Re-benchmarks baseline and tuned models: test sets, generation, judges, metrics, report."""

from core.cli import quiet_library_noise

quiet_library_noise()  # before any of our entry points imports torch / bitsandbytes
