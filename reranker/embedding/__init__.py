"""Training the first stage: the bi-encoder (embedder) trainer, its losses over query and passage vectors, its
collator and its dense dev check, for fine-tuning the embedder that retrieves and mines. Built on the reranker
trainer's machinery, so it may import reranker.training besides common, data, models and retrieval; nothing beside
it (mining, evaluation, synth) or above it.
"""
