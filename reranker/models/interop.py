"""What other tools need to score a model trained here as we do: the files that make sentence-transformers'
CrossEncoder load a decoder reranker with our prompt and answer tokens.

sentence-transformers (6.x) loads a ...ForCausalLM checkpoint as a CrossEncoder: a `Transformer` module that runs
the causal LM on the last position, then a `LogitScore` module, logit(true) - logit(false) or logit(true) alone. A
(query, passage) pair reaches the model as two chat messages with the roles "query" and "document", rendered by a
chat template. So a model folder needs: the prompt as such a template (passed in sentence_bert_config.json, and as
the tokenizer's chat template when it has none: the pair check reads the tokenizer's), and our answer token ids in
LogitScore's config (its defaults, the ids of the vocabulary entries "yes" and "no", are not the ids we score with
when the tokenizer splits "yes" as "▁yes" or "Ġyes").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reranker.models.scorers.prompts import INSTRUCTION, SLOTS, PromptScorer

logger = logging.getLogger(__name__)

LOGIT_SCORE_FOLDER = "1_LogitScore"
# Every file written here, for the output folder's cleanup: the tokenizer's chat_template.jinja is not ours alone.
FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", LOGIT_SCORE_FOLDER)
PROBE = ("what is the capital of france", "paris is the capital of france")

# The text of each message, whether sentence-transformers passes it flat ("content": "...") or structured
# ("content": [{"type": "text", "text": "..."}]); the last query and document messages win.
READ_PAIR = ('{%- set pair = namespace(query="", document="") -%}'
             '{%- for m in messages -%}'
             '{%- set text = m.content if m.content is string else '
             '(m.content | selectattr("type", "eq", "text") | map(attribute="text") | join("")) -%}'
             '{%- if m.role == "query" -%}{%- set pair.query = text -%}'
             '{%- elif m.role == "document" -%}{%- set pair.document = text -%}{%- endif -%}'
             '{%- endfor -%}')


def pair_chat_template(scorer: PromptScorer) -> str:
    """The scorer's prompt as a Jinja chat template over a query and a document message: its lead special tokens
    (BOS), then prefix + body + suffix with the instruction in place, every literal as a quoted Jinja string (so
    braces in a prompt are text)."""
    prompt = scorer.prompt
    text = prompt.prefix + prompt.body + prompt.suffix
    if prompt.instruction is not None:
        text = text.replace(INSTRUCTION, prompt.instruction)
    lead = "".join(scorer.tokenizer.convert_ids_to_tokens(scorer.lead))
    pieces, start = [json.dumps(lead)], 0
    for slot in SLOTS.finditer(text):
        pieces += [json.dumps(text[start:slot.start()]), "pair.query" if slot.group(0) == "{query}" else
                   "pair.document"]
        start = slot.end()
    pieces.append(json.dumps(text[start:]))
    return READ_PAIR + "".join(f"{{{{ {piece} }}}}" for piece in pieces if piece != '""')


def renders_as_scored(scorer: PromptScorer, template: str) -> bool:
    """Whether the template, tokenized as sentence-transformers does (the rendered text, no special tokens added),
    gives the ids our scorer feeds the model for a probe pair."""
    messages = [{"role": "query", "content": PROBE[0]}, {"role": "document", "content": PROBE[1]}]
    text = scorer.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    ours = scorer.encode([PROBE[0]], [PROBE[1]], 64, 64)
    return scorer.tokenizer(text, add_special_tokens=False)["input_ids"] == ours["input_ids"][0].tolist()


def sentence_transformers_config(scorer: PromptScorer, template: str, max_length: int | None) -> dict[str, dict]:
    """{relative path: JSON content} of a CrossEncoder made of the causal LM and a LogitScore on our tokens."""
    text_kwargs = {"max_length": max_length} if max_length else {}
    false_id = scorer.token_ids[1] if scorer.score_mode == "pair" else None
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
            {"idx": 1, "name": "1", "path": LOGIT_SCORE_FOLDER,
             "type": "sentence_transformers.cross_encoder.modules.logit_score.LogitScore"}],
        "sentence_bert_config.json": {
            "transformer_task": "text-generation",
            "modality_config": {"text": {"method": "forward", "method_output_name": "logits"},
                                "message": {"method": "forward", "method_output_name": "logits", "format": "flat"}},
            "module_output_name": "causal_logits",
            "processing_kwargs": {"chat_template": {"chat_template": template}, **({"text": text_kwargs}
                                                                                 if text_kwargs else {})}},
        # predict() applies a sigmoid, as for every one-score CrossEncoder: compute_score(normalize=True).
        "config_sentence_transformers.json": {"model_type": "CrossEncoder",
                                              "activation_fn": "torch.nn.modules.activation.Sigmoid",
                                              "prompts": {}, "default_prompt_name": None},
        f"{LOGIT_SCORE_FOLDER}/config.json": {"true_token_id": scorer.token_ids[0], "false_token_id": false_id,
                                              "module_input_name": "causal_logits"},
    }


def write_sentence_transformers_files(folder: str | Path, scorer, max_length: int | None) -> bool:
    """For a decoder reranker: the files that make `CrossEncoder(folder)` give our scores. Nothing for the other
    families (an encoder loads as a CrossEncoder as it is; a seq2seq model cannot). Returns whether they were
    written: not when the tokenizer reads the rendered prompt differently from our scorer (logged)."""
    if scorer.family != "decoder":
        return False
    folder = Path(folder)
    template = pair_chat_template(scorer)
    if not renders_as_scored(scorer, template):
        logger.warning("sentence-transformers' CrossEncoder would tokenize this model's prompt differently from "
                       "reranker's scorer (the lead special tokens as text); no sentence-transformers files written")
        return False
    for name, content in sentence_transformers_config(scorer, template, max_length).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if getattr(scorer.tokenizer, "chat_template", None) is None:
        # sentence-transformers checks pairs against the tokenizer's own template; a chat model's is kept.
        (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    return True
