"""The pipeline's expand stage: the mined groups and the dev candidates rewritten with document expansion."""

from __future__ import annotations

import logging

from reranker.data.beir import load_beir
from reranker.data.expansion import Expansion, expand_dev, expand_groups
from reranker.models.embed import Embedder, default_pooling

logger = logging.getLogger(__name__)


def expand_files(train_file, mined, dev, mined_out, dev_out, corpus_folder: str, per_pair: int, model: str,
                 dtype: str, split: str = "train", pooling: str | None = None) -> dict:
    """The pipeline's expand stage: the mined groups (each query's own id left out of its documents' questions)
    and the dev candidates, expanded from the training file's queries."""
    embedder = Embedder(model, pooling=pooling or default_pooling(model), dtype=dtype)
    expansion = Expansion.from_train_file(str(train_file), embedder, per_pair=per_pair)
    summary = {"questions_per_document": per_pair, "training_queries": len(expansion.query_ids),
               "documents_with_questions": len(expansion.by_doc)}
    summary["train"] = expand_groups(str(mined), str(mined_out), expansion, embedder,
                                     load_beir(corpus_folder, split).corpus)
    summary["dev"] = expand_dev(str(dev), str(dev_out), expansion, embedder)
    if summary["train"]["not_in_corpus"]:
        logger.warning("%d of %d training passages are not documents of %s (matched by text): read unexpanded",
                       summary["train"]["not_in_corpus"], summary["train"]["passages"], corpus_folder)
    return summary
