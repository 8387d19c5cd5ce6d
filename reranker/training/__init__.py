"""Training: the argument dataclasses, the losses (pure functions over a [groups, group_size] score matrix),
the Trainer subclass (with atomic saves), health checks, the dev ranking run during training, the probe head
initialisation, the output folder (overwrite, resume, staged saves), the model card, and `train()` /
`run_training()`. May import common, data, models and retrieval.
"""
