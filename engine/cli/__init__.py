"""The `automlp` command line (`python -m engine.cli`): the top of the engine, it may import every stage."""
