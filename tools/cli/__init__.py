"""The ``t5electra`` command: one subcommand per job, registered by the
module of its group (``serving``: serve and the cluster; ``calls``: calling a
running server; ``measuring``: load test, bench, soak and checkpoints)."""

from __future__ import annotations

import argparse
import logging
import sys

from . import calls, measuring, serving
from .calls import highlight

__all__ = ["highlight", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="t5electra", description="gRPC model server for T5 generation and ELECTRA replaced-token detection"
    )
    commands = root.add_subparsers(dest="command", required=True)
    for group in (serving, calls, measuring):
        group.register(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parser().parse_args(argv)
    # The command line as given, for a command that runs itself again (serve's server child).
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args.run(args)
