"""Builds CULTURAX: import, classify, expand, dedup, generate, judge, views (see data_pipeline/pipeline.py)."""

from core.cli import quiet_library_noise

quiet_library_noise()  # before any of our entry points imports torch / bitsandbytes
