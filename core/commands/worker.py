"""``synesthesia worker``: the JSON-lines worker that the Blender add-on drives."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError


def _run(args) -> int:
    from ..worker import main

    return main()


def build_addon_zip(out) -> Path:
    """Zip ``blender_addon/`` as a Blender extension package (manifest at the zip's root), atomically."""
    import zipfile

    from ..fsutil import atomic_path

    src = Path(__file__).resolve().parents[2] / "blender_addon"
    if not (src / "blender_manifest.toml").is_file():
        raise InputError(f"{src} has no blender_manifest.toml: reinstall Synesthesia")
    out = Path(out)
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(src.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                    z.write(f, f.relative_to(src).as_posix())
    return out


def _addon(args) -> int:
    out = build_addon_zip(args.output)
    print(f"wrote {out}")
    print("Blender: Edit > Preferences > Get Extensions > Install from Disk..., then set 'Synesthesia Python' to")
    print(f"  {sys.executable}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("worker", help="serve jobs as JSON lines on stdin/stdout (used by the Blender add-on)")
    p.set_defaults(func=_run)
    p = sub.add_parser("blender-addon", help="write the Blender add-on as an extension .zip to install from disk")
    p.add_argument("-o", "--output", default="synesthesia_blender.zip", help="the .zip to write")
    p.set_defaults(func=_addon)
