"""``synesthesia worker``: the JSON-lines worker that the Blender add-on drives."""

from __future__ import annotations


def _run(args) -> int:
    from ..worker import main

    return main()


def register(sub) -> None:
    p = sub.add_parser("worker", help="serve jobs as JSON lines on stdin/stdout (used by the Blender add-on)")
    p.set_defaults(func=_run)
