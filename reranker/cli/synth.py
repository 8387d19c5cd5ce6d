"""reranker-synth (and synth.py): training pairs without labels (crops, titles as queries, InPars)."""

from __future__ import annotations

import json
import logging
import sys

from reranker.cli import common as cli
from reranker.common import dist
from reranker.synth.arguments import SynthArguments
from reranker.synth.synthesize import synthesize

logger = logging.getLogger("reranker.synth")


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    (args,) = cli.parse((SynthArguments,), argv, "reranker-synth")
    summary = synthesize(args)
    if not dist.is_main_process():  # a torchrun rank that generated its share: rank 0 writes
        return summary
    if args.pseudo_dev:
        from reranker.workflows.pseudo_dev import build_pseudo_dev

        summary["pseudo_dev"] = build_pseudo_dev(args.output_file, args.corpus, args.pseudo_dev,
                                                 args.pseudo_dev_queries, args.seed, args.dev_depth,
                                                 overwrite=args.overwrite)
    logger.info("Wrote %s:\n%s", args.output_file, json.dumps(summary, indent=2))
    return summary


def entry() -> int:
    return cli.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
