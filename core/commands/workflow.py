"""``synesthesia run-workflow``: run a ComfyUI workflow (API or UI format) without ComfyUI."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def register(sub) -> None:
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
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .. import workflow
    from ..progress import tqdm_callback

    prompt = workflow.load_workflow(args.workflow)
    result = workflow.run_workflow(
        prompt, workflow.parse_overrides(args.overrides), models_dir=args.models, input_dir=args.input_dir,
        output_dir=args.output_dir, callback=None if getattr(args, "quiet", False) else tqdm_callback("workflow"))
    for f in result.files:
        print(f)
    log.info("ran %d node(s), wrote %d file(s)", len(result.order), len(result.files))
    return 0
