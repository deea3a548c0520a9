"""The ``synesthesia`` command line: both pipelines, training and evaluation, headless.

Each group of subcommands lives in a module under ``core/commands`` that exposes
``register(subparsers)``; a subcommand sets ``func(args) -> int``. Hosts add their own groups as
extra ``register`` callables: the ``synesthesia`` entry point (:mod:`synesthesia.__main__`) adds the
ones that run ComfyUI nodes headless and package the Blender add-on. Bad input exits 2 with a
one-line message (``--debug`` shows the traceback); success exits 0. Ctrl-C exits 130 and SIGTERM
(``timeout``, systemd, Slurm, ``docker stop``) 143, each after the same clean-up: every writer's
hidden temporary file is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
from typing import Callable, Iterator, Sequence

from .errors import SynesthesiaError

# Modules that add subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "basic",  # info, models, download
    "convert",  # convert foreign checkpoints to safetensors + config.json
    "s2v",  # animate, train-s2v, eval-s2v: sound -> video
    "v2a",  # foley, train-v2a: video -> audio
    "v2a_eval",  # eval-v2a: FD, FAD, KL, AV-Align of generated Foley
    "train_small",  # train-clip, train-vae: the small models trained from scratch
    "stylegan_train",  # train-stylegan: a small StyleGAN2 from scratch
    "eval_defaults",  # eval-defaults: what the embedded default models show on held-out toyscape
    "toyscape",  # toyscape: the procedural sound+video world the default models train on
    "defaults",  # train-defaults: remake the embedded default models
    "demo",  # demo: the main job with the embedded default models
    "tables",  # tables: the papers' tables in miniature on toyscape
)


Registrar = Callable[[argparse._SubParsersAction], None]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same clean-up runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (main thread only)."""
    try:
        previous, installed = signal.signal(signal.SIGTERM, _raise_terminated), True
    except ValueError:  # not the main thread: signals are not ours to handle
        previous, installed = None, False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def build_parser(extra: Sequence[Registrar] = ()) -> argparse.ArgumentParser:
    """The parser with core's subcommands, then those each of ``extra`` adds."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="synesthesia",
        description="Sound to video and video to sound (Foley), on your own GPU.",
    )
    parser.add_argument("--version", action="version", version=f"synesthesia {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f".commands.{name}", __package__)
        module.register(sub)
    for register in extra:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None, extra: Sequence[Registrar] = ()) -> int:
    parser = build_parser(extra)
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with _sigterm_raises():
            return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stderr.close()
        return 0
    except Terminated:
        print("synesthesia: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("synesthesia: interrupted", file=sys.stderr)
        return 130
    except (SynesthesiaError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        if args.debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"synesthesia {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
