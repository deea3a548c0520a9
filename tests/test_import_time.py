"""Importing the package stays light: no heavy library is imported until a function needs it.

Checked in one fresh interpreter through ``sys.modules`` after each stage (not timed;
``bench/bench_import.py`` measures the time). torch is allowed: every host that loads us has
already imported it.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("transformers", "diffusers", "av", "librosa", "cv2", "nltk", "textblob", "sklearn", "scipy")

STAGES = [
    ("package", "import synesthesia"),
    ("core-store-mel", "import synesthesia.core.store, synesthesia.core.mel, synesthesia.core.safeload"),
    # building the CLI imports every subcommand module: they must defer heavy imports too
    ("cli-parser", "from synesthesia.__main__ import build_parser; build_parser()"),
    # control: the probe really sees a heavy module once one is imported
    ("control", "import av"),
]

PROBE = """
import json, sys
heavy = {heavy!r}
seen = {{}}
for name, stmt in {stages!r}:
    exec(stmt)
    seen[name] = sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}})
print(json.dumps(seen))
"""


def test_no_heavy_imports_until_needed():
    code = PROBE.format(heavy=HEAVY, stages=STAGES)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["package"] == [], seen
    assert seen["core-store-mel"] == [], seen
    assert seen["cli-parser"] == [], seen
    assert seen["control"] == ["av"], seen


def test_the_command_line_parser_does_not_import_torch():
    """``synesthesia --help`` (and every subcommand's argument errors) answer without torch, whose import
    is the largest part of a fresh command's start on a CPU (1.5 s of 2.0 s on an idle core here)."""
    code = ("import sys; from synesthesia.__main__ import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False", r.stdout
