"""Import direction: service -> search -> indexer -> models; scripts -> search, indexer, models (and the
app factory for `serve`); models -> nothing of ours. No import cycles anywhere, imports inside functions
included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"models", "indexer", "search", "service", "scripts", "tests", "benchmarks"}
ALLOWED = {
    "models": set(),
    "indexer": {"models"},
    "search": {"indexer", "models"},
    "service": {"search", "indexer", "models"},
    "scripts": {
        "search",
        "indexer",
        "models",
        "service",
    },  # service: the app factory and server options (below)
}
# `serve`: the app and its server; every command: the log format (FASHION_LOG_FORMAT)
SCRIPTS_MAY_IMPORT_FROM_SERVICE = {"service.app", "service.server", "service.log_format"}
FORBIDDEN_THIRD_PARTY = {
    "models": {"fastapi", "faiss", "starlette", "uvicorn"},
    "indexer": {"fastapi", "uvicorn", "starlette"},
    "search": {"fastapi", "uvicorn", "starlette"},
}
PACKAGES = (*ALLOWED, "benchmarks")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every module of ours that `path` imports, at any depth of the file (functions included).
    `from package import name` counts as importing `package.name` when that is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return {name for name in found if name.split(".")[0] in OURS}


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


def test_scripts_use_only_the_app_factory_from_service() -> None:
    modules = our_modules()
    for path in sorted((ROOT / "scripts").rglob("*.py")):
        from_service = {m for m in imported_modules(path, set(modules)) if m.split(".")[0] == "service"}
        extra = from_service - SCRIPTS_MAY_IMPORT_FROM_SERVICE
        allowed = sorted(SCRIPTS_MAY_IMPORT_FROM_SERVICE)
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)} (only {allowed})"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return path[path.index(child) :] + [child]
            if child not in state and (cycle := visit(child)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_no_import_cycles_anywhere() -> None:
    modules = our_modules()
    known = set(modules)
    graph = {name: imported_modules(path, known) & known - {name} for name, path in modules.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_function_level_cycles(tmp_path: Path) -> None:
    """The check itself: a cycle through an import inside a function is found; a chain is not a cycle."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    source = tmp_path / "m.py"
    source.write_text("def late():\n    from models.detector import Garment\n", encoding="utf-8")
    assert imported_modules(source, {"models.detector"}) == {"models.detector"}


def test_settings_are_data() -> None:
    """search/settings.py defines no method that builds objects or changes process state: only validators
    (private) and `to_spec`, which turns embedder settings into the models' frozen spec (data to data)."""
    tree = ast.parse((ROOT / "search" / "settings.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            assert node.name.startswith("_") or node.name == "to_spec", (
                f"search/settings.py defines {node.name}(): build objects in search/runtime.py"
            )


def test_modules_stay_small() -> None:
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines; split it"
