"""The package's folders are the pipeline's stages, and imports only point down.

Each stage may import the stages below it and nothing above; the rules of the layout
(README's "How it is built") are checked here from the source, so a new import that points
up, or a module added at the top of `exporter/`, fails a test instead of eroding the shape.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "exporter"

# Lowest first: a stage may import any stage of a lower layer, and its own.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("model", "clock", "health", "client"),
    ("integrations",),
    ("config",),
    ("store",),
    ("tracking", "stats", "metrics"),
    ("sources", "jobs"),
    ("runtime",),
    ("api", "web"),
    ("app",),
    ("server",),
    ("cli",),
    ("__main__", "__init__"),
)
LAYER_OF = {stage: depth for depth, stages in enumerate(LAYERS) for stage in stages}

# Third-party imports that must never appear in a stage (ARCHITECTURE's forbidden arrows).
FORBIDDEN = {
    "model": {"flask", "werkzeug", "sqlite3", "psycopg", "psycopg_pool", "requests", "urllib3"},
    "store": {"flask", "werkzeug", "requests", "urllib3"},
    "tracking": {"flask", "werkzeug", "sqlite3", "psycopg", "psycopg_pool"},
    "jobs": {"flask", "werkzeug", "sqlite3", "psycopg", "psycopg_pool"},
    "metrics": {"flask", "werkzeug", "sqlite3", "psycopg", "psycopg_pool"},
    # The client runs inside users' worker processes, so it stays light (InProcessJobs may
    # use the app's own Flask).
    # sqlite3 is stdlib (the rule is about weight): InProcessJobs shares jobs across processes.
    "client": {"psycopg", "psycopg_pool", "msgspec", "yaml", "prometheus_client"},
    "integrations": {"flask", "sqlite3", "psycopg", "psycopg_pool", "msgspec", "yaml"},
}

WIRING = {"__init__", "__main__", "app", "cli", "clock", "config", "health", "server"}


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "vendor" not in path.parts)


def _stage(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in a module, relative ones resolved."""
    package = ["exporter", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _target_stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "exporter" or len(parts) < 2:
        return None
    first = parts[1]
    if (PACKAGE / first).is_dir() or (PACKAGE / f"{first}.py").exists():
        return first
    return None  # a name imported from the package itself (`from exporter import __version__`)


def test_every_stage_has_a_layer() -> None:
    stages = {_stage(path) for path in _modules()}
    assert stages - LAYER_OF.keys() == set(), "add the new stage to LAYERS"


def test_the_top_of_the_package_holds_only_wiring() -> None:
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top <= WIRING, f"move {sorted(top - WIRING)} into a stage folder"
    assert len(top) <= 10


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    stage = _stage(path)
    depth = LAYER_OF[stage]
    upward = [
        f"line {line}: {module}"
        for line, module in _imports(path)
        if (target := _target_stage(module)) is not None
        and target != stage
        and LAYER_OF[target] >= depth
    ]
    assert upward == [], f"{stage} may import only stages below it"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_forbidden_library_in_a_stage(path: Path) -> None:
    banned = FORBIDDEN.get(_stage(path), set())
    used = [
        f"line {line}: {module}"
        for line, module in _imports(path)
        if module.split(".")[0] in banned
    ]
    assert used == []
