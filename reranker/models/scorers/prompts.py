"""Prompts of the families that read a pair as text (seq2seq, decoder): named templates, and pairs made into ids.

A prompt is prefix + body + suffix; the body holds {query} and {passage}, and the body or suffix may hold
{instruction}. The resolved strings are saved with a trained model, so it reads the same whatever later versions of
the named templates say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from reranker.common.errors import ConfigError
from reranker.data.collator import cut_to_budget
from reranker.models.scorers.base import SCORE_MODES, Scorer, ScorerOptions, answer_token_id

QUERY, PASSAGE, INSTRUCTION = "{query}", "{passage}", "{instruction}"
SLOTS = re.compile(r"\{query\}|\{passage\}")


@dataclass(frozen=True)
class Template:
    """A named prompt and the answer tokens that go with it."""

    family: str
    body: str
    prefix: str = ""
    suffix: str = ""
    instruction: str | None = None
    true_token: str = "yes"
    false_token: str | None = "no"
    score_mode: str = "pair"


TEMPLATES = {
    # monoT5 (Nogueira et al. 2020; pygaggle): the published checkpoints answer "true" / "false" after "Relevant:".
    "monot5": Template("seq2seq", body="Query: {query} Document: {passage} Relevant:", true_token="true",
                       false_token="false"),
    # Qwen3-Reranker's chat prompt as its model card shows it (a system turn asking for "yes" or "no", an empty
    # thinking block), scored as softmax over (no, yes) at the last position, i.e. sigmoid(yes - no).
    "qwen3": Template(
        "decoder",
        prefix="<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
               "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n",
        body="<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {passage}",
        suffix="<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        instruction="Given a web search query, retrieve relevant passages that answer the query"),
    # FlagEmbedding's bge-reranker-v2-gemma: "A: {query}\nB: {passage}\n{prompt}", scored by the "Yes" logit
    # alone. FlagEmbedding tokenizes the two sides and the prompt separately and joins the ids; here the prompt is
    # tokenized as one text, which can differ at the joins for some tokenizers.
    "bge-gemma": Template(
        "decoder", body="A: {query}\nB: {passage}", suffix="\n{instruction}",
        instruction="Given a query A and a passage B, determine whether the passage contains an answer to the query "
                    "by providing a prediction of either 'Yes' or 'No'.",
        true_token="Yes", false_token="No", score_mode="single"),
}


@dataclass(frozen=True)
class Prompt:
    prefix: str
    body: str
    suffix: str
    instruction: str | None

    def __post_init__(self):
        if QUERY not in self.body or PASSAGE not in self.body:
            raise ConfigError(f"the template body must hold {QUERY} and {PASSAGE}, got {self.body!r}")
        text = self.prefix + self.body + self.suffix
        if self.instruction is not None and INSTRUCTION not in text:
            raise ConfigError(f"an instruction was given, but the template has no {INSTRUCTION} to put it in")
        if self.instruction is None and INSTRUCTION in text:
            raise ConfigError(f"the template holds {INSTRUCTION}: give --instruction")

    def render(self, query: str, passage: str) -> str:
        # Not str.format: texts and custom templates may hold braces of their own. The instruction goes in first,
        # and both texts in one pass, so a query that happens to hold "{passage}" is left as it is.
        text = self.prefix + self.body + self.suffix
        if self.instruction is not None:
            text = text.replace(INSTRUCTION, self.instruction)
        return SLOTS.sub(lambda m: query if m.group(0) == QUERY else passage, text)


def special_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (BOS for Llama or Gemma, EOS for T5)."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return [], []


def split_budgets(overhead: int, max_length: int) -> tuple[int, int]:
    """(query, passage) budgets when only a total is known (a model not trained here): a quarter for the query, at
    most 64 tokens, the rest for the passage."""
    room = max_length - overhead
    if room < 2:
        raise ConfigError(f"a max length of {max_length} tokens leaves no room beside the template's {overhead}")
    query = min(64, max(1, room // 4))
    return query, room - query


def encode_prompts(tokenizer, prompt: Prompt, queries: list[str], passages: list[str], query_max_len: int,
                   passage_max_len: int, lead: list[int], tail: list[int],
                   pad_to_multiple_of: int | None = None) -> dict:
    """Each side cut to its budget, put in the prompt, tokenized as one text between the `lead` and `tail` special
    tokens, padded on the tokenizer's side."""
    unique = list(dict.fromkeys(queries))
    cut = dict(zip(unique, cut_to_budget(tokenizer, unique, query_max_len)[0], strict=True))
    passages = cut_to_budget(tokenizer, passages, passage_max_len)[0]
    texts = [prompt.render(cut[q], p) for q, p in zip(queries, passages, strict=True)]
    rows = [lead + ids + tail for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return pad(rows, tokenizer.pad_token_id, tokenizer.padding_side, pad_to_multiple_of)


def pad(rows: list[list[int]], pad_id: int, side: str, multiple: int | None = None) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    if multiple:
        width = -(-width // multiple) * multiple
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return {"input_ids": ids, "attention_mask": mask}


class PromptScorer(Scorer):
    """What the seq2seq and decoder scorers share: the prompt, the answer tokens and the score mode, resolved once
    from a named template and the options given."""

    default_template: str
    keep_trailing: bool  # whether the tokenizer's trailing special tokens (T5's EOS) follow the prompt

    def __init__(self, tokenizer, config=None, options: ScorerOptions | None = None):
        super().__init__(tokenizer, config, options)
        options = options or ScorerOptions()
        pieces = {k: getattr(options, k) for k in ("prefix", "body", "suffix") if getattr(options, k) is not None}
        name = options.template or ("custom" if pieces else self.default_template)
        if name == "custom":
            base = Template(self.family, body=pieces.get("body") or "", true_token=TEMPLATES[self.default_template]
                            .true_token, false_token=TEMPLATES[self.default_template].false_token)
        elif name not in TEMPLATES or TEMPLATES[name].family != self.family:
            known = [n for n, t in TEMPLATES.items() if t.family == self.family]
            raise ConfigError(f"--template {name!r} is not a {self.family} template: choose one of "
                              f"{', '.join(known)}, or give --template_body (and --template_prefix / _suffix)")
        else:
            base = TEMPLATES[name]
        prefix, body, suffix = (pieces.get(k, getattr(base, k)) for k in ("prefix", "body", "suffix"))
        instruction = options.instruction if options.instruction is not None else base.instruction
        self.prompt = Prompt(prefix, body, suffix, instruction if INSTRUCTION in prefix + body + suffix
                             or options.instruction is not None else None)
        same = (self.prompt.prefix, self.prompt.body, self.prompt.suffix) == (base.prefix, base.body, base.suffix)
        self.template = name if same else "custom"
        self.score_mode = options.score_mode or base.score_mode
        if self.score_mode not in SCORE_MODES:
            raise ConfigError(f"--score_mode must be one of {', '.join(SCORE_MODES)}, got {self.score_mode!r}")
        self.true_token = options.true_token or base.true_token
        self.false_token = (options.false_token or base.false_token) if self.score_mode == "pair" else None
        if self.score_mode == "pair" and not self.false_token:
            raise ConfigError("--score_mode pair needs --false_token")
        self.token_ids = [answer_token_id(tokenizer, self.true_token, "--true_token")]
        if self.false_token is not None:
            self.token_ids.append(answer_token_id(tokenizer, self.false_token, "--false_token"))
        self.lead, trail = special_ids(tokenizer)
        self.tail = trail if self.keep_trailing else []
        # The prompt's own tokens around empty texts, special tokens included.
        self.overhead = len(self.lead) + len(tokenizer(self.prompt.render("", ""), add_special_tokens=False)
                                             ["input_ids"]) + len(self.tail)

    def encode(self, queries: list[str], passages: list[str], query_max_len: int | None = None,
               passage_max_len: int | None = None, max_length: int | None = None,
               pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
        if query_max_len is None or passage_max_len is None:
            if max_length is None:
                raise ValueError("encode needs the query and passage budgets, or a max_length to share")
            query_max_len, passage_max_len = split_budgets(self.overhead, max_length)
        return encode_prompts(self.tokenizer, self.prompt, queries, passages, query_max_len, passage_max_len,
                              self.lead, self.tail, pad_to_multiple_of)

    def pair_length(self, query_max_len: int, passage_max_len: int) -> int:
        return query_max_len + passage_max_len + self.overhead

    def token_logits(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The answer tokens' logits [pairs, 1 or 2], in the order of `token_ids` (true, then false)."""
        raise NotImplementedError

    def graph_or_token_logits(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`token_logits`, or what an exported graph returns, which is the same: reranker-export traces
        `token_logits` itself, so the prompt, the answer ids and the reading of the logits stay this scorer's."""
        if getattr(model, "output", None) == "answer_logits":  # a GraphModel (reranker/models/backends.py)
            return model(**inputs).answer_logits
        return self.token_logits(model, inputs)

    def scores(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.answer_logits(self.graph_or_token_logits(model, inputs))

    @property
    def has_pair_logits(self) -> bool:
        return self.score_mode == "pair"

    def pair_logits(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.has_pair_logits:
            raise ConfigError(f"the {self.family} scorer reads logit({self.true_token!r}) alone (score mode single): "
                              "it has no (false, true) logits")
        return self.graph_or_token_logits(model, inputs).float()[:, [1, 0]]

    def answer_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The score from the answer tokens' logits [n, 1 or 2], in float32."""
        logits = logits.float()
        return logits[:, 0] - logits[:, 1] if self.score_mode == "pair" else logits[:, 0]

    def metadata(self, base_model: str | None = None) -> dict:
        return {"family": self.family, "template": self.template, "prefix": self.prompt.prefix,
                "body": self.prompt.body, "suffix": self.prompt.suffix, "instruction": self.prompt.instruction,
                "true_token": self.true_token, "false_token": self.false_token, "token_ids": list(self.token_ids),
                "score_mode": self.score_mode, "base_model": base_model}

    def summary(self) -> dict:
        return {"family": self.family, "template": self.template, "true_token": self.true_token,
                "false_token": self.false_token, "score_mode": self.score_mode}

    def describe(self) -> str:
        answer = (f"logit({self.true_token!r}) - logit({self.false_token!r})" if self.score_mode == "pair"
                  else f"logit({self.true_token!r})")
        return f"{self.family}, template {self.template}, score {answer}"
