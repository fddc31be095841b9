"""Import direction: service -> indexer, models; indexer -> models; models -> nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"models", "indexer", "service", "scripts", "tests", "benchmarks"}
ALLOWED = {"models": set(), "indexer": {"models"}, "service": {"indexer", "models"}}
FORBIDDEN_THIRD_PARTY = {
    "models": {"fastapi", "faiss", "starlette", "uvicorn"},
    "indexer": {"fastapi", "uvicorn"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_direction(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        roots = imported_roots(path)
        wrong = (roots & OURS) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
        banned = roots & FORBIDDEN_THIRD_PARTY.get(package, set())
        assert not banned, f"{path.relative_to(ROOT)} imports {sorted(banned)}"


def test_modules_stay_small() -> None:
    for package in (*ALLOWED, "scripts"):
        for path in (ROOT / package).rglob("*.py"):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines; split it"
