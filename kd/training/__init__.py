"""The training loop, its checkpoints and the objective it optimizes."""
