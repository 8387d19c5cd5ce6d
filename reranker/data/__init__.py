"""Data as the trainer and the evaluator read it: validated training records (our group format, the InRanker
format, the peers' formats), sources (jsonl files, folders, Hugging Face datasets), seeded group sampling and
weighted mixing, the collator that tokenizes (query, passage) pairs, BEIR folders (corpus, queries, qrels, run
files, pseudo-dev folders), and document expansion's texts. May import reranker.common only.
"""
