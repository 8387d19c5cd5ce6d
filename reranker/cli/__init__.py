"""The installed commands (`reranker-train`, `reranker-mine`, `reranker-eval`, `reranker-synth`,
`reranker-pipeline`, `reranker-iterate`): each a `main(argv=None)` that parses, builds and runs, and an
`entry()` that turns a user error into one line and exit code 1. The top layer: may import anything.
"""
