"""The README's set-up commands are true on a fresh machine.

The README's install block must install everything its test command needs (pytest among it), its
test command must be the one ``.ci/run`` runs after installing the same way, and every module the
tests and the package import must come with that install (no package that only happens to be on
our machines).
"""
from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import re
import shlex
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "pip._vendor.tomli")
ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# Modules of the hosts the adapters run inside (never installed by pip), and the tests' own helpers.
HOST_MODULES = {"bpy", "comfy", "folder_paths", "server", "comfy_api", "nodes"}


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def _commands(section: str) -> list[str]:
    """The shell commands of a section's ```bash blocks, comments and blank lines dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _installed_extras(commands: list[str]) -> set[str] | None:
    """The extras of this checkout that ``pip install -e .[...]`` lines install; None if none installs it."""
    extras = None
    for cmd in commands:
        for part in cmd.split("&&"):
            if "pip install" not in part:
                continue
            words = shlex.split(part)
            if words[:2] != ["pip", "install"] and words[:4] != ["python", "-m", "pip", "install"]:
                continue
            for w in words:
                m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", w)
                if m:
                    extras = (extras or set()) | set((m.group(1) or "").split(",")) - {""}
    return extras


def _ci_pytest_command() -> str:
    lines = [ln.strip() for ln in CI.splitlines() if re.match(r"\s*python -m pytest\b", ln)]
    assert len(lines) == 1, f".ci/run should run pytest once, found {lines}"
    return lines[0]


def _requirements(extras: set[str]) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for e in extras:
        reqs += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][e]]
    return reqs


def test_readme_install_block_installs_what_the_test_command_needs():
    extras = _installed_extras(_commands(_section("Install")))
    assert extras is not None, "the README's install block never installs the checkout"
    names = {canonicalize_name(r.name) for r in _requirements(extras)}
    assert "pytest" in names, f"the README's install block (extras {sorted(extras)}) never installs pytest"
    # pyproject's pytest options use pytest-timeout's `timeout`; without it pytest only warns and
    # the suite runs with no limit.
    assert "pytest-timeout" in names


def test_readme_test_command_is_the_one_ci_runs_after_the_same_install():
    tests = _commands(_section("Tests"))
    assert tests == [_ci_pytest_command()], f"README tests {tests} vs .ci/run {_ci_pytest_command()!r}"
    readme_extras = _installed_extras(_commands(_section("Install")))
    ci_extras = _installed_extras([ln.strip() for ln in CI.splitlines()])
    assert "test" in ci_extras and ci_extras <= readme_extras | {"test"}, (ci_extras, readme_extras)


def _distribution_closure(reqs: list[Requirement]) -> set[str]:
    """Every installed distribution these requirements pull in (walking the installed metadata)."""
    seen, todo = set(), [(r, frozenset(r.extras)) for r in reqs]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for spec in dist.requires or []:
            sub = Requirement(spec)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append((sub, frozenset(sub.extras)))
    return {name for name, _ in seen}


def _imported_top_level_modules() -> dict[str, str]:
    files = [*ROOT.glob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "core").rglob("*.py"),
             *(ROOT / "nodes").rglob("*.py")]
    local = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"synesthesia"}
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local | HOST_MODULES:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_module_comes_with_the_readme_install():
    extras = _installed_extras(_commands(_section("Install")))
    closure = _distribution_closure(_requirements(extras))
    providers = md.packages_distributions()
    missing = {}
    for module, where in _imported_top_level_modules().items():
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & closure:
            missing[module] = where
    assert not missing, f"imported but not installed by the README's install block: {missing}"


def test_tests_read_nothing_outside_the_repository():
    """A fresh clone has nothing beside it: no test may reach above the checkout for data."""
    outside = re.compile(r"ROOT\.parent\b|parents\[[2-9]\]|[\"']shared[\"']")
    hits = [f"{p.name}:{i}: {line.strip()}" for p in sorted((ROOT / "tests").glob("*.py")) if p.name != Path(__file__).name
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if outside.search(line)]
    assert not hits, hits


def test_every_shipped_workflow_is_package_data():
    """A wheel install carries every workflow file the hosts read (UI and API format)."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["synesthesia"]
    packaged = {p for pattern in patterns for p in ROOT.glob(pattern)}
    files = {p for p in (ROOT / "workflows").rglob("*") if p.is_file()}
    assert files and files <= packaged, sorted(str(p.relative_to(ROOT)) for p in files - packaged)
