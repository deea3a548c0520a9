"""``python -m synesthesia`` and the ``synesthesia`` console script: the command line.

Core's subcommand groups (:mod:`synesthesia.core.cli`) plus the host ones that run ComfyUI nodes
headless or package the Blender add-on (:mod:`synesthesia.nodes.commands`). Those live above
``core``, which knows nothing about either host, so the two are put together here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .core import cli as _core_cli
from .nodes import commands as _host_commands

REGISTRARS = (_host_commands.register,)


def build_parser() -> argparse.ArgumentParser:
    return _core_cli.build_parser(REGISTRARS)


def main(argv: Sequence[str] | None = None) -> int:
    return _core_cli.main(argv, REGISTRARS)


if __name__ == "__main__":
    sys.exit(main())
