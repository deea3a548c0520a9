"""The repository's top level is fixed (the brief): nothing new appears beside these entries."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {"__init__.py", "__main__.py", "nodes", "blender_addon", "core", "weights", "workflows", "tests",
           "pyproject.toml", "README.md", ".ci", "bench", "docs"}
IGNORED_SUFFIXES = (".egg-info",)
IGNORED = {"__pycache__", "build", "dist"}


def test_top_level_holds_only_the_fixed_entries():
    extra = sorted(p.name for p in ROOT.iterdir()
                   if not p.name.startswith(".") or p.name == ".ci"
                   if p.name not in ALLOWED and p.name not in IGNORED and not p.name.endswith(IGNORED_SUFFIXES))
    assert not extra, f"new top-level entries {extra}: put them under core/, nodes/, docs/, bench/ or tests/"
