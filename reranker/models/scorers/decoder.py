"""The decoder family (Qwen3-Reranker, bge-reranker-v2-gemma, RankLLaMA-style yes/no): AutoModelForCausalLM reads
the prompt, and the score is read at each row's last real token: logit(yes) - logit(no), or logit(yes) alone.

Only the two answer rows of the output embedding are used: the last real token's hidden state times those rows
(plus their bias, if any). The full vocabulary is never projected at every position, which is what most runs out
of memory with these models ([pairs, length, vocab] floats: 32 x 512 x 152k is 10 GB in fp32, before gradients).

Padding: tokenizers of decoders often have no pad token; `load_tokenizer` pads with EOS then (Tevatron's pad fix).
That is harmless here because the last real token is found from the attention mask, not from the pad id, and the
position ids are counted from the mask too, so left and right padding give the same score.
"""

from __future__ import annotations

import inspect

import torch
from transformers import AutoModelForCausalLM

from reranker.common.errors import ConfigError
from reranker.models.scorers.base import ScorerOptions, unwrap
from reranker.models.scorers.prompts import PromptScorer

# Passed as logits_to_keep: the causal LM's own forward then projects no position onto the vocabulary.
NO_POSITIONS = torch.empty(0, dtype=torch.long)


class DecoderScorer(PromptScorer):
    family = "decoder"
    auto_class = AutoModelForCausalLM
    default_template = "qwen3"
    keep_trailing = False  # the answer is the token after the prompt: nothing may follow it

    def __init__(self, tokenizer, config=None, options: ScorerOptions | None = None):
        super().__init__(tokenizer, config, options)
        if tokenizer.pad_token is None:
            # Tevatron's pad fix: causal LMs often ship without a pad token; pad with EOS. Harmless here, since the
            # last real token and the positions are read from the attention mask, never from the pad id.
            if tokenizer.eos_token is None:
                raise ConfigError("the tokenizer has neither a pad nor an eos token to pad batches with")
            tokenizer.pad_token = tokenizer.eos_token

    def token_logits(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]
        hidden = last_hidden_states(model, inputs["input_ids"], mask)
        last = (torch.arange(mask.shape[1], device=mask.device) * mask).argmax(-1)  # each row's last real token
        hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # [pairs, hidden]
        lm = hf_model(model)
        head = lm.get_output_embeddings()
        ids = torch.tensor(self.token_ids, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):  # two rows: cheap in fp32, and the difference
            logits = hidden.float() @ head.weight[ids].float().T  # of two large logits keeps its precision
            if getattr(head, "bias", None) is not None:
                logits = logits + head.bias[ids].float()
        return lm_logit_transform(lm.config, logits)


def hf_model(model):
    """The Hugging Face model inside DDP and PEFT wrappers (PEFT's adapters live inside its modules)."""
    model = unwrap(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def last_hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The final hidden states [pairs, length, hidden] of the causal LM's body, without its vocabulary projection.

    The model's own forward runs (so a DDP wrapper syncs gradients and a PEFT wrapper applies its adapters), with
    logits_to_keep asking for no position; a hook on the body takes its output. A model whose forward has no
    logits_to_keep (some trust_remote_code models) has its body called directly, which DDP cannot sync.
    """
    if isinstance(model, torch.nn.DataParallel):
        raise ConfigError("the decoder family trains on several GPUs with torchrun (scripts/train.sh), not with "
                          "torch.nn.DataParallel")
    base = hf_model(model)
    body = base.get_decoder()
    # Positions counted over real tokens: a left-padded row gets the positions a right-padded one has.
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": positions, "use_cache": False}
    if "logits_to_keep" not in inspect.signature(base.forward).parameters:
        if unwrap(model) is not model:
            raise ConfigError(f"{type(base).__name__}.forward has no logits_to_keep: its hidden states cannot be read "
                              "through the DDP wrapper; train it in one process")
        return body(**inputs)[0]
    captured: list[torch.Tensor] = []
    hook = body.register_forward_hook(lambda _module, _args, output: captured.append(output[0]))
    try:
        model(**inputs, logits_to_keep=NO_POSITIONS.to(input_ids.device))
    finally:
        hook.remove()
    return captured[-1]


def lm_logit_transform(config, logits: torch.Tensor) -> torch.Tensor:
    """What some causal LMs do to lm_head's output before it is a logit (Cohere scales, Granite divides, Gemma 2
    and 3 soft-cap): applied to the two logits, so the scores equal the model's own."""
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)):
        logits = logits * scale
    scaling = getattr(config, "logits_scaling", None)
    if isinstance(scaling, (int, float)) and scaling:
        logits = logits / scaling
    cap = getattr(config, "final_logit_softcapping", None)
    if isinstance(cap, (int, float)) and cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
