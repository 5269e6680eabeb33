"""What every stage shares: the LLM interface and its backends, the command plumbing, the preflight framework,
chat-template rules and publishing an output folder. It imports no stage (data_pipeline, train, eval)."""
