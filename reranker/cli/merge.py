"""reranker-merge: merge a LoRA adapter trained with reranker-train --use_lora into its base model, giving a plain
checkpoint of the family's class that any Hugging Face tool loads (and Reranker, with the same scores).

    reranker-merge outputs/my-lora --output_dir outputs/my-lora-merged
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from reranker.cli import common
from reranker.models.merge import merge_adapter

logger = logging.getLogger("reranker.merge")


@dataclass
class MergeArguments:
    adapter_dir: str = field(
        metadata={"help": "The adapter folder (the output of reranker-train --use_lora, or one of its checkpoints); "
                          "may also be given as the first argument."},
    )
    output_dir: str = field(
        metadata={"help": "Where the merged model is written: a new folder, created whole or not at all."},
    )
    base_model: str | None = field(
        default=None,
        metadata={"help": "The base model, where it has moved since training. Default: the path or id the adapter "
                          "records. Either way it must be the weights the adapter was trained on (checked by their "
                          "fingerprint): merging into other weights is refused."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an --output_dir that already holds files (once the merge is whole)."}
    )


def main(argv: list[str] | None = None):
    """Parse argv (ADAPTER_DIR first, or --adapter_dir), merge, and return the merged model's folder."""
    common.setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and not argv[0].startswith("-") and not argv[0].endswith((".json", ".yaml", ".yml")):
        argv = ["--adapter_dir", *argv]
    (args,) = common.parse((MergeArguments,), argv, "reranker-merge")
    return merge_adapter(args.adapter_dir, args.output_dir, args.base_model, args.overwrite_output_dir)


def entry() -> int:
    return common.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
