"""The host subcommands: ``run-workflow``, ``worker`` and ``blender-addon``.

They run ComfyUI nodes headless (``run-workflow``, and the Blender worker, which runs a shipped
workflow) or package the Blender add-on, so they sit above ``core``: the top-level command line
(:mod:`synesthesia.__main__`) adds them to core's groups through :func:`register`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..core.errors import InputError

log = logging.getLogger(__name__)


def register(sub) -> None:
    """Add ``worker``, ``blender-addon`` and ``run-workflow`` to the ``synesthesia`` subparsers."""
    _register_worker(sub)
    _register_workflow(sub)


# --- worker, blender-addon ---------------------------------------------------------------------


def _run_worker(args) -> int:
    from .worker import main

    return main()


def build_addon_zip(out) -> Path:
    """Zip ``blender_addon/`` as a Blender extension package (manifest at the zip's root), atomically,
    with the shipped API workflows under ``workflows/`` (the add-on's ComfyUI backend submits them)."""
    import zipfile

    from ..core.fsutil import atomic_path

    src = Path(__file__).resolve().parents[1] / "blender_addon"
    if not (src / "blender_manifest.toml").is_file():
        raise InputError(f"{src} has no blender_manifest.toml: reinstall Synesthesia")
    out = Path(out)
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(src.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                    z.write(f, f.relative_to(src).as_posix())
            # the shipped API workflows, which the add-on submits to a ComfyUI server
            for f in sorted(set((src.parent / "workflows").glob("*_api.json"))
                            | set((src.parent / "workflows" / "api").glob("*_api.json"))
                            | {src.parent / "workflows" / "api" / "job_inputs.json"}):
                z.write(f, f"workflows/{f.name}")
    return out


def _addon(args) -> int:
    out = build_addon_zip(args.output)
    print(f"wrote {out}")
    print("Blender: Edit > Preferences > Get Extensions > Install from Disk..., then set 'Synesthesia Python' to")
    print(f"  {sys.executable}")
    return 0


def _register_worker(sub) -> None:
    p = sub.add_parser("worker", help="serve jobs as JSON lines on stdin/stdout (used by the Blender add-on)")
    p.set_defaults(func=_run_worker)
    p = sub.add_parser("blender-addon", help="write the Blender add-on as an extension .zip to install from disk")
    p.add_argument("-o", "--output", default="synesthesia_blender.zip", help="the .zip to write")
    p.set_defaults(func=_addon)


# --- run-workflow ------------------------------------------------------------------------------


def _register_workflow(sub) -> None:
    p = sub.add_parser(
        "run-workflow",
        help="run a ComfyUI workflow that uses Synesthesia nodes, without ComfyUI",
        description="Runs the Synesthesia nodes of a ComfyUI workflow (API format, or UI format converted on "
                    "the fly) and the core nodes the runner implements (load/save audio and video, save/preview "
                    "images). Graphs with other ComfyUI nodes are refused with their names.",
    )
    p.add_argument("workflow", help="workflow .json (API format as saved by 'Export (API)', or UI format)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input; NODE is a node id, class name or title; VALUE is JSON or text "
                        "(repeatable), e.g. --set 1.file=song.wav --set SynesthesiaVTADiffuse.steps=25")
    p.add_argument("--models", default=None, help="models folder in ComfyUI's layout (synesthesia/<kind>, clip_vision, ...)")
    p.add_argument("--input-dir", default=".", help="folder where file names in loader nodes are looked up (default: .)")
    p.add_argument("-o", "--output-dir", default=".", help="folder where save nodes write (default: .)")
    p.set_defaults(func=_run_workflow)


def _run_workflow(args) -> int:
    from ..core.progress import tqdm_callback
    from . import workflow

    prompt = workflow.load_workflow(args.workflow)
    result = workflow.run_workflow(
        prompt, workflow.parse_overrides(args.overrides), models_dir=args.models, input_dir=args.input_dir,
        output_dir=args.output_dir, callback=None if getattr(args, "quiet", False) else tqdm_callback("workflow"))
    for f in result.files:
        print(f)
    log.info("ran %d node(s), wrote %d file(s)", len(result.order), len(result.files))
    return 0
