"""SFT then DPO with LoRA via TRL, merge, tiny models for tests."""

from core.cli import quiet_library_noise, quiet_transformers_banner

quiet_library_noise()  # before any of our entry points imports torch / bitsandbytes
quiet_transformers_banner()
