"""Training the first stage: bi-encoder (embedder) losses over query and passage vectors, for fine-tuning the
embedder that retrieves and mines. May import reranker.common, data, models and retrieval; nothing beside it
(training, mining, evaluation, synth) or above it.
"""
