"""Experiments: runs recorded in the store, with their curves and bundle, started and resumed. May import
every stage below: core, data, models, evaluation, training, serving."""
