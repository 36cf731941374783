"""Measuring and building: ``loadtest``, ``bench``, ``soak`` and
``make-checkpoints``, one module each, so that a command's flags sit beside
the run that reads them. Each imports its machinery when it runs."""

from __future__ import annotations

import argparse

from . import bench, loadtest, make_checkpoints, soak


def register(commands: argparse._SubParsersAction) -> None:
    for command in (loadtest, bench, soak, make_checkpoints):
        command.register(commands)
