"""``python -m data_pipeline.llm.local_server``, as README documents it: the server is core.llm.local_server."""

from core.llm.local_server import main

if __name__ == "__main__":
    main()
