"""Training: the argument dataclasses, the losses (pure functions over a [groups, group_size] score matrix),
the Trainer subclass, health checks, the dev ranking run during training, the probe head initialisation, and
`train()` / `run_training()`. May import common, data, models and retrieval.
"""
