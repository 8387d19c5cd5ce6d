"""Training pairs without labels: independent cropping, titles as queries, or InPars query generation."""

from __future__ import annotations

import json
import logging
import sys

from reranker import cli
from reranker.synth import synthesize
from reranker.synth_args import SynthArguments

logger = logging.getLogger("reranker.synth")


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    (args,) = cli.parse((SynthArguments,), argv)
    summary = synthesize(args)
    logger.info("Wrote %s:\n%s", args.output_file, json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    sys.exit(cli.run(main, logger))
