"""The embedder's Trainer: queries and passages embedded apart, the in-batch loss over every rank's batch, the
gradient cache, the dense dev check, and sentence-transformers' module files with every save."""

from __future__ import annotations

import contextlib
import logging
import time

import torch
import torch.nn.functional as F

from reranker.common import dist
from reranker.models.embed import Embedder, pool, write_sentence_transformers_files
from reranker.training import dev_eval
from reranker.training.trainer import GroupTrainer, autocast_dtype

from . import losses
from .dev import dense_run

logger = logging.getLogger(__name__)

BASE = "base_"  # metric prefix of the embedder training started from


class RandomState:
    """The RNG states at one moment, to replay a forward pass with the same dropout (the gradient cache)."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    @contextlib.contextmanager
    def replay(self):
        devices = list(range(torch.cuda.device_count())) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


class EmbedderTrainer(GroupTrainer):
    """Trains a plain Hugging Face encoder (AutoModel) as a bi-encoder.

    `settings`: pooling, normalize, query_instruction, passage_instruction, query_max_len, passage_max_len.
    `dev_pool`: (ids, texts) the dev queries are retrieved from; `base_metrics`: the starting embedder's.
    """

    def __init__(self, *args, settings: dict, dev_pool=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.dev_pool = dev_pool
        self.base_metrics: dict[str, float] | None = None

    # -- the loss ---------------------------------------------------------------------------------------------
    def embed(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = model(**inputs).last_hidden_state
        vectors = pool(hidden.float(), inputs["attention_mask"], self.settings["pooling"])
        return F.normalize(vectors, dim=-1) if self.settings["normalize"] else vectors

    def loss_from_embeddings(self, queries: torch.Tensor, passages: torch.Tensor, keys: torch.Tensor,
                             teacher: torch.Tensor | None) -> torch.Tensor:
        """The loss of one rank's batch (query i's positive is passage row i, its hard negatives follow the
        positives record by record). Distillation is over each record's own passages; the in-batch loss over
        every rank's, gathered, so that each rank computes the global batch's loss."""
        args = self.args
        n = queries.shape[0]
        group_size = passages.shape[0] // n
        distill = None
        if args.loss != "mnrl":
            student = losses.group_scores(queries, passages, group_size) / args.temperature
            if args.loss == "kl":
                distill = losses.kl_distill(student, teacher, args.distill_temperature)
            else:
                distill = losses.margin_mse(student[:, :1].expand(-1, group_size - 1), student[:, 1:],
                                            teacher[:, :1].expand(-1, group_size - 1), teacher[:, 1:])
            if args.distill_alpha == 1.0:
                return distill
        if args.gather_across_devices and dist.world_size() > 1:
            parts = [(passages[:n], keys[:n])] + ([(passages[n:], keys[n:])] if group_size > 1 else [])
            queries = dist.gather_with_grad(queries)
            passages = torch.cat([dist.gather_with_grad(p) for p, _ in parts])
            keys = torch.cat([dist.gather_rows(k) for _, k in parts])
            n = queries.shape[0]
        mask = losses.false_negative_mask(keys[:n], keys).to(queries.device) if args.mask_false_negatives else None
        contrastive = losses.multiple_negatives_ranking(queries, passages, args.temperature, mask, args.symmetric)
        if distill is None:
            return contrastive
        return args.distill_alpha * distill + (1 - args.distill_alpha) * contrastive

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        queries = self.embed(model, inputs["query"])
        passages = self.embed(model, inputs["passage"])
        loss = self.loss_from_embeddings(queries, passages, inputs["passage_keys"], inputs.get("teacher_scores"))
        return (loss, {"queries": queries, "passages": passages}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """With --gradient_cache_chunk: the batch's embeddings without activations, the loss and its gradient
        over them, then each chunk again with activations, backpropagating its share (Gao et al., 2021). Dropout
        is replayed, so the gradient is the one the whole batch would give at once."""
        chunk = self.args.gradient_cache_chunk
        if not chunk:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        pieces, cached = [], {"query": [], "passage": []}
        with torch.no_grad():
            for side in cached:
                batch = inputs[side]
                for start in range(0, batch["input_ids"].shape[0], chunk):
                    sub = {k: v[start:start + chunk] for k, v in batch.items()}
                    state = RandomState()
                    with self.compute_loss_context_manager():
                        cached[side].append(self.embed(model, sub))
                    pieces.append((side, sub, state))
        queries = torch.cat(cached["query"]).requires_grad_()
        passages = torch.cat(cached["passage"]).requires_grad_()
        loss = self.loss_from_embeddings(queries, passages, inputs["passage_keys"], inputs.get("teacher_scores"))
        loss = loss / self.current_gradient_accumulation_steps
        loss.backward()  # only the embeddings (and the gather's cross-rank sum) are in this graph
        grads = {"query": queries.grad.split(chunk), "passage": passages.grad.split(chunk)}
        seen = {"query": 0, "passage": 0}
        for k, (side, sub, state) in enumerate(pieces):
            grad = grads[side][seen[side]]
            seen[side] += 1
            # DDP averages gradients once, after the last chunk (an outer no_sync, for accumulation, still wins).
            sync = contextlib.nullcontext() if k == len(pieces) - 1 else self.accelerator.no_sync(model)
            with sync, state.replay(), self.compute_loss_context_manager():
                surrogate = (self.embed(model, sub) * grad).sum()
                self.accelerator.backward(surrogate)
        return loss.detach()

    # -- the dev check ----------------------------------------------------------------------------------------
    def dense_metrics(self) -> dict[str, float]:
        """nDCG@10 and MRR@10 of the current weights retrieving the dev queries from the pool, and the dev file's
        first stage over the same queries."""
        model = self.model
        was_training = model.training
        model.eval()
        try:
            embedder = Embedder.from_model(model, self.processing_class, self.settings["pooling"],
                                           self.settings["normalize"], autocast_dtype(self.args))
            s = self.settings
            run = dense_run(embedder, self.eval_dataset, self.dev_pool, s["query_max_len"], s["passage_max_len"],
                            s["query_instruction"], s["passage_instruction"], self.args.per_device_eval_batch_size)
        finally:
            model.train(was_training)
        return dev_eval.dev_metrics(self.eval_dataset, run)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Every rank retrieves all dev queries (a dev set is small), so every rank keeps the same checkpoint."""
        start = time.perf_counter()
        raw = self.dense_metrics()
        if self.base_metrics is not None:
            raw[BASE + "nDCG@10"] = self.base_metrics["nDCG@10"]
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in raw.items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 2)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if self.is_world_process_zero():
            first = raw[dev_eval.FIRST_STAGE + "nDCG@10"]
            base = raw.get(BASE + "nDCG@10")
            if base is not None and raw["nDCG@10"] < base:
                logger.warning("!!! Step %d: the embedder retrieves the %d dev queries WORSE than the one training "
                               "started from (nDCG@10 %.4f < %.4f).", self.state.global_step,
                               len(self.eval_dataset), raw["nDCG@10"], base)
            logger.info("Step %d: dense dev nDCG@10 %.4f (started from %s, first stage %.4f), MRR@10 %.4f",
                        self.state.global_step, raw["nDCG@10"], "?" if base is None else f"{base:.4f}", first,
                        raw["MRR@10"])
        return metrics

    # -- saving -----------------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Every save (checkpoints, the final model): the Trainer's (weights, config, tokenizer), then the module
        files with which sentence-transformers, the miner and reranker-eval embed as training did."""
        super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return
        s = self.settings
        config = self.accelerator.unwrap_model(self.model).config
        write_sentence_transformers_files(output_dir or self.args.output_dir, s["pooling"], s["normalize"],
                                          config.hidden_size, s["passage_max_len"], s["query_instruction"])
