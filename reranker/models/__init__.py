"""Models: loading checkpoints and tokenizers, the model families' scorers (`scorers/`: pairs -> inputs -> one
score per pair), `Reranker` (scoring pairs with any family, the API evaluation and mining build on), `Embedder`
(dense embeddings for the first stage and the miner) and its on-disk cache, and `interop` (the files that let
sentence-transformers load a decoder reranker with our scores). May import reranker.common and
reranker.data.
"""
