"""Rankings: BM25 and faiss search, first-stage runs for evaluation (cached), ranking and pairwise metrics
from standard libraries, and fusion of runs. May import reranker.common, reranker.data and reranker.models.
"""
