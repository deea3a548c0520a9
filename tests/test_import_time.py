"""Importing the package stays light: no heavy library is imported until a function needs it.

Checked in a fresh interpreter through ``sys.modules`` (not timed; ``bench/bench_import.py``
measures the time). torch is allowed: every host that loads us has already imported it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("transformers", "diffusers", "av", "librosa", "cv2", "nltk", "textblob", "sklearn", "scipy")

PROBE = """
import json, sys
{stmt}
heavy = {heavy!r}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}})))
"""


def _heavy_after(stmt: str) -> list:
    code = PROBE.format(stmt=stmt, heavy=HEAVY)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "stmt",
    [
        "import synesthesia",
        "import synesthesia.core.store, synesthesia.core.mel, synesthesia.core.safeload",
        # building the CLI imports every subcommand module: they must defer heavy imports too
        "from synesthesia.core.cli import build_parser; build_parser()",
    ],
    ids=["package", "core-store-mel", "cli-parser"],
)
def test_no_heavy_imports(stmt):
    assert _heavy_after(stmt) == []


def test_probe_detects_a_heavy_import():
    """Control: the probe really sees a heavy module when one is imported."""
    assert _heavy_after("import synesthesia; import av") == ["av"]
