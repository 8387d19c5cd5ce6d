"""The package's layers: imports run down (common < data < models < retrieval < training, mining, evaluation,
synth < embedding (the embedder trainer, built on training's) < workflows < cli), never up or sideways between
subpackages of one layer, and each subpackage says what it owns in its docstring."""

import ast
from pathlib import Path

from conftest import ROOT

LAYERS = {"common": 0, "data": 1, "models": 2, "retrieval": 3, "training": 4, "embedding": 4.5, "mining": 4,
          "evaluation": 4, "synth": 4, "workflows": 5, "cli": 6}


def imported_subpackages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "reranker" and len(parts) > 1 and parts[1] in LAYERS:
                found.add(parts[1])
    return found


def test_imports_run_down_the_layers():
    package = ROOT / "reranker"
    assert {p.name for p in package.iterdir() if (p / "__init__.py").is_file()} == set(LAYERS)
    wrong = []
    for path in sorted(package.rglob("*.py")):
        own = path.relative_to(package).parts[0]
        if own not in LAYERS:
            continue
        wrong += [f"{path.relative_to(ROOT)} imports reranker.{other}" for other in imported_subpackages(path)
                  if other != own and LAYERS[other] >= LAYERS[own]]
    assert wrong == []


def test_every_subpackage_says_what_it_owns_and_may_import():
    for name in LAYERS:
        doc = ast.get_docstring(ast.parse((ROOT / "reranker" / name / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), name
