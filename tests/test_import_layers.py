"""The import layers, read from the source (AST), not from what happens to be imported at run time.

``core/`` is the product every host stands on: no module under it imports ``nodes/``,
``blender_addon/``, ComfyUI (``comfy``, ``folder_paths``) or Blender (``bpy``). Module-level and
function-level imports both count; relative imports are resolved against the module's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "synesthesia"  # what the repository root is imported as (pip install -e .)

# Imported names (resolved, dotted) that core must never reach.
FORBIDDEN = (f"{PACKAGE}.nodes", f"{PACKAGE}.blender_addon", "comfy", "folder_paths", "bpy")


def module_name(path: Path, root: Path = ROOT) -> str:
    """``core/s2v/ops.py`` -> ``synesthesia.core.s2v.ops``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every dotted name ``source`` imports, anywhere in the file, with relative imports resolved.

    ``from pkg import name`` yields both ``pkg`` and ``pkg.name`` (``name`` may be a submodule).
    ``importlib.import_module("...")`` with a constant name counts too.
    """
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            name = node.args[0].value
            if not name.startswith("."):
                out.add(name)
    return out


def forbidden_in(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))


def core_modules(root: Path = ROOT):
    for path in sorted((root / "core").rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


def test_walker_resolves_relative_imports_and_flags_hosts():
    src = "from ...nodes import workflow\ndef f():\n    from ..errors import InputError\n    import bpy.types\n"
    names = imported_names(src, f"{PACKAGE}.core.s2v.thing")
    assert f"{PACKAGE}.nodes.workflow" in names
    assert f"{PACKAGE}.core.errors.InputError" in names
    assert forbidden_in(names) == ["bpy.types", f"{PACKAGE}.nodes", f"{PACKAGE}.nodes.workflow"]
    pkg = imported_names("from . import media\nfrom .. import __version__\n", f"{PACKAGE}.core", is_package=True)
    assert f"{PACKAGE}.core.media" in pkg and PACKAGE in pkg
    assert forbidden_in(imported_names("import folder_paths, comfy.utils\n", "x.y")) == ["comfy.utils", "folder_paths"]


def test_core_imports_no_host():
    modules = list(core_modules())
    assert len(modules) > 20, "the walk found too few core modules"
    bad = {}
    for path in modules:
        names = imported_names(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
        hits = forbidden_in(names)
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    assert not bad, f"core modules import a host (move the code above core, into nodes/ or the root): {bad}"


# --- import cycles among core modules -------------------------------------------------------------


def import_targets(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules in ``known`` that ``source`` imports, anywhere in the file (relative imports resolved).

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg`` (its
    ``__init__``); ``import a.b`` points at ``a.b``. A package that is only passed through on the
    way to a submodule is not counted.
    """
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for a in node.names:
                if f"{base}.{a.name}" in known:
                    out.add(f"{base}.{a.name}")
                elif base in known:
                    out.add(base)
    out.discard(module)
    return out


def module_edges(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """``{module: {modules it imports}}`` among ``sources`` (``{module: (source, is_package)}``)."""
    known = set(sources)
    return {mod: import_targets(src, mod, is_pkg, known) for mod, (src, is_pkg) in sources.items()}


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def core_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p): (p.read_text(encoding="utf-8"), p.name == "__init__.py") for p in core_modules()}


def test_cycle_finder_sees_function_level_imports():
    srcs = {
        f"{PACKAGE}.core.a": ("from . import b\n", False),
        f"{PACKAGE}.core.b": ("def f():\n    from .c import x\n", False),
        f"{PACKAGE}.core.c": ("import synesthesia.core.a\n", False),
        f"{PACKAGE}.core.d": ("from .a import y\n", False),
    }
    assert find_cycles(module_edges(srcs)) == [[f"{PACKAGE}.core.a", f"{PACKAGE}.core.b", f"{PACKAGE}.core.c"]]
    srcs[f"{PACKAGE}.core.c"] = ("import os\n", False)  # a -> b -> c, d -> a: no circle
    assert find_cycles(module_edges(srcs)) == []


def test_core_has_no_import_cycles():
    cycles = find_cycles(module_edges(core_sources()))
    assert not cycles, ("core modules import each other in a circle (one direction each: move the shared "
                        f"code into a module below both): {cycles}")


def private_imports(source: str) -> list[str]:
    """Names starting with one underscore that ``source`` imports from another module of ours
    (relative imports; what a library keeps private is that library's business)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            out += [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_private_names_stay_in_their_module():
    assert private_imports("from .generator import _sniff, load_generator\nfrom .. import __version__\n"
                           "from torch.x import _y\n") == ["_sniff"]
    bad = {}
    for path in core_modules():
        names = private_imports(path.read_text(encoding="utf-8"))
        if names:
            bad[str(path.relative_to(ROOT))] = names
    assert not bad, f"core modules import private names of other modules (make them public or move them): {bad}"
