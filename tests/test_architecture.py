"""The shape of app/: shared layers at the bottom, areas as peers above them, no import running back up.

Read from the source with `ast` (every import, also those inside functions), so a new module is
checked the moment it exists. The rules, and where things live, are in the docstring of app/__init__.py.
"""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from app import ROOT

APP = ROOT / "app"

# Shared layers, bottom first: a module may import its own layer and the layers below it, never above.
SHARED_LAYERS = [
    ("core", {"app.config", "app.metadata", "app.extensions", "app.atomic", "app.files", "app.uploads", "app.imaging",
              "app.models", "app.htmx", "app.errors", "app.processes", "app.redis_server", "app.redirects",
              "app.worker"}),
    ("auth", {"app.auth"}),
    ("replicate", {"app.replicate"}),
    ("jobs", {"app.jobs"}),
    ("gallery", {"app.gallery"}),
    ("webhooks", {"app.webhooks"}),
]
# Areas: peers above the shared layers. One area reaches another only through the names the other
# exports in its package's `__all__` (its public surface), imported from the package itself.
AREAS = {"app.generate", "app.canvas", "app.datasets", "app.loras"}
# The factory and the entry points wire everything together and may import anything.
TOP = {"app", "app.cli", "app.wsgi"}

# Modules over MAX_LINES are allowed only when they hold one role, named here.
MAX_LINES = 400
ONE_ROLE = {
    "app.canvas.tiles": "the tile store: versioned tiles, levels and history (and its pixel arithmetic)",
    "app.replicate.client": "the Replicate HTTP client: predictions, models, files, downloads, retries",
    "app.replicate.schema": "reading a model's openapi schema (any Cog generation, hostile ones too) into fields",
    "app.replicate.presets": "data: the shipped models and their schema snapshots",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(APP.rglob("*.py"))}


def unit_of(module: str) -> tuple[str, str]:
    """(kind, name): ("top", m), ("shared", layer name), ("area", package) for a module of app/."""
    if module in TOP:
        return "top", module
    for name, prefixes in SHARED_LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return "shared", name
    for area in AREAS:
        if module == area or module.startswith(area + "."):
            return "area", area
    raise AssertionError(f"{module} belongs to no layer or area: add it to tests/test_architecture.py")


def layer_rank(name: str) -> int:
    return [layer for layer, _ in SHARED_LAYERS].index(name)


def source_of(module: str) -> str:
    return MODULES[module].read_text(encoding="utf-8")


def imports_of(module: str, source: str) -> list[tuple[str, tuple[str, ...], int]]:
    """(imported module, names imported from it, line) for every import of app modules in `source`."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, (), node.lineno) for alias in node.names if alias.name.split(".")[0] == "app"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "app":
                continue
            names = tuple(alias.name for alias in node.names)
            # `from app.canvas import staging` imports the submodule app.canvas.staging.
            submodules = [n for n in names if f"{target}.{n}" in MODULES]
            for name in submodules:
                found.append((f"{target}.{name}", (), node.lineno))
            rest = tuple(n for n in names if n not in submodules)
            if rest or not submodules:
                found.append((target, rest, node.lineno))
    return found


@cache
def public_surface(package: str) -> set[str]:
    """The names an area's package lists in `__all__`: all another area may use of it."""
    for node in ast.parse(source_of(package)).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def violations(sources: dict[str, str] | None = None) -> list[str]:
    """Every import that breaks the rules, as "path:line imports x: why"; `sources` overrides files."""
    sources = sources or {}
    found = []
    for module in MODULES:
        kind, unit = unit_of(module)
        for target, names, line in imports_of(module, sources.get(module) or source_of(module)):
            where = f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
            target_kind, target_unit = unit_of(target)
            if kind == "top":
                continue
            if target_kind == "top":
                found.append(f"{where}: only the factory and entry points are above everything")
            elif kind == "shared" and target_kind == "area":
                found.append(f"{where}: a shared layer ({unit}) must not import an area")
            elif kind == "shared" and layer_rank(target_unit) > layer_rank(unit):
                found.append(f"{where}: the {unit} layer must not import the {target_unit} layer above it")
            elif kind == "area" and target_kind == "area" and target_unit != unit:
                private = [n for n in names if n not in public_surface(target_unit)]
                if target != target_unit or not names or private:
                    found.append(f"{where} {', '.join(private or names)}: areas use each other only through "
                                 f"the names in {target_unit}.__all__")
    return found


def test_every_import_points_down_and_areas_meet_only_through_their_public_surface():
    assert violations() == []


def test_the_rules_catch_an_import_running_back_up():
    """The checker itself: a shared module importing an area, and an area reaching into another's
    internals or past its public surface, are all reported."""
    found = violations({
        "app.models": source_of("app.models") + "\nimport app.canvas.tiles\n",
        "app.canvas.tasks": source_of("app.canvas.tasks") + "\ndef f():\n    from app.datasets.tasks import run_export\n"
                            "from app.generate import run_generation\n",
    })
    assert any("app/models.py" in v and "must not import an area" in v for v in found)
    assert any("app/canvas/tasks.py" in v and "app.datasets.tasks" in v for v in found)
    assert any("app/canvas/tasks.py" in v and "app.generate run_generation" in v for v in found)
    assert len(found) == 3


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_long_module_holds_one_role(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    if lines > MAX_LINES:
        assert module in ONE_ROLE, f"{module} has {lines} lines: split it by role, or name its one role in ONE_ROLE"


def test_views_define_no_tables_and_no_jobs():
    """A module that registers routes holds views only: tables live in models.py, jobs in tasks.py."""
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        routes = any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in
                     ("get", "post", "route", "put", "delete")
                     for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) for d in node.decorator_list)
        if not routes:
            continue
        jobs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("run_")]
        tables = [n.name for n in tree.body if isinstance(n, ast.ClassDef)
                  and any(ast.unparse(base) == "db.Model" for base in n.bases)]
        assert not jobs and not tables, f"{module} mixes views with {jobs + tables}"


def test_one_htmx_vocabulary_and_one_message_partial():
    """HTMX headers are read and written only in app/htmx.py; every message is templates/_message.html."""
    for module, path in MODULES.items():
        if module == "app.htmx":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"HX-[A-Z]", text), f"{module}: use app.htmx"
    partials = {p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*.html")}
    assert "_message.html" in partials
    assert not partials & {"canvas/_notice.html", "datasets/_message.html", "errors/_message.html"}


def test_no_htmx_request_is_aborted_on_purpose():
    """htmx 2 reports every request it aborts (hx-sync "replace"/"abort", the htmx:abort event) as a
    console error (htmx:sendAbort, htmx:afterRequest), and the console must stay clean: a newer request
    waits for the one in flight instead ("queue last")."""
    sources = [*(ROOT / "templates").rglob("*.html"), *(ROOT / "static" / "js").rglob("*.js")]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for sync in re.findall(r"""hx-sync\s*=\s*["']([^"']*)["']""", text):
            strategy = sync.partition(":")[2].strip() or "drop"
            assert strategy.split()[0] in ("drop", "queue"), f"{path.relative_to(ROOT)}: hx-sync={sync!r}"
        assert "htmx:abort" not in text, f"{path.relative_to(ROOT)} aborts an htmx request"


def test_jobs_are_enqueued_by_function_not_by_dotted_string():
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "enqueue_job":
                assert node.args and not isinstance(node.args[0], ast.Constant), f"{module}:{node.lineno}"
                assert "task" not in {k.arg for k in node.keywords}, f"{module}:{node.lineno}"


def test_no_test_imports_another_test_module():
    tests = ROOT / "tests"
    for path in tests.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                last = node.module.split(".")[-1]
                assert not (node.module.startswith("tests") and (last.startswith("test_") or last == "conftest")), (
                    f"{path.relative_to(ROOT)} imports {node.module}: move shared helpers to tests/*_helpers.py")
