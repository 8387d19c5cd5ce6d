"""Workflows that chain the commands: the pipeline (data, mine, expand, train, eval on a BEIR folder),
rounds of mining with the previous model (iterate), training data from a BEIR folder, pseudo-dev folders from
synthetic queries, and the stage stamps and launching both share. May import every subpackage but cli.
"""
