"""Kept for one documented command: ``python -m data_pipeline.llm.local_server`` (the LLM library is core.llm)."""
