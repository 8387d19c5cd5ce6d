"""Models: loading checkpoints and tokenizers, `Reranker` (scoring pairs, the API evaluation and mining build
on), `Embedder` (dense embeddings for the first stage and the miner) and its on-disk cache. May import
reranker.common and reranker.data.
"""
