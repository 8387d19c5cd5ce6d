"""Foundations every other subpackage may use: errors that name the file, line and field; reading user text
files and writing outputs atomically; content hashes for cache keys; precision (dtype, autocast, whether bf16
is native here); distributed helpers (rank checks, sharding: the only place with `torch.distributed` calls);
text helpers; score normalisation and fusion for one query. Imports nothing else of reranker.
"""
