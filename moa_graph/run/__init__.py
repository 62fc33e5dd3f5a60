"""Ways to run a mixture: the factory, streaming, a LangChain chat model, checkpoints.

``factory`` is ``create_moa``; ``studio`` is the per-run form of LangGraph Studio;
``streaming`` is ``stream_moa``; ``chat_model`` is ``ChatMoA`` (with
``structured_output``); ``checkpoints`` opens SQLite and PostgreSQL checkpointers.
"""
