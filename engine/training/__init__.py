"""Training: batches and losses, the one fit loop, the architecture search (Algorithm 1), checkpoints, the
SASRec baseline's training and the whole run (`runner.run_automlp`). May import every stage below it:
core, data, models, evaluation."""
