"""Foundations every stage uses: the run configuration (`RunConfig`), its presets, and typed progress events.
Imports nothing else of the engine."""
