"""Measured performance: each module prints a table and one summary line against a named baseline."""

from core.cli import quiet_library_noise

quiet_library_noise()  # before any of our entry points imports torch / bitsandbytes
