"""Builds a tiny BERT cross-encoder and its tokenizer in a folder: no hub, a few hundred KB, seconds to train."""

from __future__ import annotations

import json
import string
from pathlib import Path

WORDS = """the a an of to in is are was what how why which when where who does do and or for with on by from at
as it its this that be can not no yes sky blue red green water ice fire sun moon star planet earth light heat cold
cat dog bird fish tree leaf river ocean mountain city country king queen war peace music song film book paper
computer code program data model train test query passage answer question rank score good bad fast slow big
small one two three many most capital france paris germany berlin italy rome spain madrid boils freezes degrees
celsius protein cell gene energy atom electron bread flour yeast bake oven tax bank loan""".split()


def build_tiny_model(folder: Path, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    """Write config, weights and a WordPiece tokenizer to `folder`; return it."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = list(dict.fromkeys(specials + WORDS + chars + ["##" + c for c in string.ascii_lowercase + string.digits]))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                              "do_lower_case": True}))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(folder)  # writes tokenizer.json: later loads are fast and need no conversion
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=512, num_labels=1,
        # No dropout: runs on different process counts must be comparable step for step.
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder
