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


LM_TEXTS = [
    "Document: paris is the capital of france\nRelevant Query: capital of france\n",
    "Document: water freezes at zero degrees\nRelevant Query: when does water freeze\n",
    "Document: bread is baked in an oven\nRelevant Query: how is bread baked\n",
    "Example 1:\nDocument: the sky is blue because light scatters\nRelevant Query: why is the sky blue\n\n",
]


def build_tiny_lm(folder: Path, kind: str = "causal", seed: int = 0, train_steps: int = 150) -> Path:
    """A tiny GPT-2 (causal) or T5 (seq2seq) with a byte-level BPE tokenizer that keeps newlines, built offline
    and trained for a few seconds on LM_TEXTS, so that it writes "capital of france" for the Paris document."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(LM_TEXTS * 20, vocab_size=300, min_frequency=1, special_tokens=["<pad>", "</s>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    vocab = len(tokenizer)
    if kind == "causal":
        config = GPT2Config(vocab_size=vocab, n_positions=512, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=1, eos_token_id=1, pad_token_id=0)
        model = GPT2LMHeadModel(config)
        batch = tokenizer(LM_TEXTS, return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        inputs = {**batch, "labels": labels}
    else:
        config = T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                          pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        model = T5ForConditionalGeneration(config)
        prompts, queries = zip(*(t.rsplit("Relevant Query:", 1) for t in LM_TEXTS), strict=True)
        batch = tokenizer([p + "Relevant Query:" for p in prompts], return_tensors="pt", padding=True)
        target = tokenizer([q.strip() + "</s>" for q in queries], return_tensors="pt", padding=True)
        inputs = {**batch, "labels": target["input_ids"].masked_fill(target["attention_mask"] == 0, -100)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(train_steps):
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    return folder


PROMPT_WORDS = """query document relevant true false yes no instruct system user assistant judge whether meets
requirements based provided note only im_start im_end think given web search retrieve relevant passages that
answer b""".split()


def build_tiny_word_tokenizer(folder: Path, family: str):
    """A word-level tokenizer that knows WORDS, the prompts' words and the answers true/false/yes/no as single
    tokens. seq2seq: T5's conventions (<pad> = 0, </s> = 1 appended to every text); decoder: a <s> prepended and
    no pad token at all, as many causal LMs ship."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    vocab = list(dict.fromkeys(specials + WORDS + PROMPT_WORDS + list(string.ascii_lowercase + string.digits
                                                                      + string.punctuation)))
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if family == "seq2seq":
        backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                            unk_token="<unk>")
    else:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 3)])
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", bos_token="<s>",
                                            unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_tiny_family_model(folder: Path, family: str, seed: int = 0, vocab_size: int | None = None) -> Path:
    """A tiny T5 (family "seq2seq") or Llama-style causal LM ("decoder") with its word-level tokenizer, random
    weights, no dropout; `vocab_size` larger than the tokenizer's makes the output embedding that big."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_word_tokenizer(folder, family)
    vocab = max(vocab_size or 0, len(tokenizer))
    torch.manual_seed(seed)
    if family == "seq2seq":
        config = T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=1,
                          num_heads=2, dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        model = T5ForConditionalGeneration(config)
    elif family == "decoder":
        config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                             bos_token_id=3, eos_token_id=1, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(f"no tiny {family} model")
    model.save_pretrained(folder)
    return folder
