"""Serving: recommendations with their long/short-term parts, model bundles and ONNX export. May import
core, data, models, evaluation and training."""
