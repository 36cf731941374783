"""Joining a Ray cluster that requires its token.

Ray 2.60 clusters started by ``ray start`` or ``ray.init()`` require a token
by default, yet a process that joins one presents it only when
``RAY_AUTH_MODE=token`` is set before Ray is imported. Commands that join a
cluster call :func:`present_cluster_token` first, so that a user on a node of
the cluster (where ``~/.ray/auth_token`` exists) needs no extra step.
This module must not import Ray.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"


def present_cluster_token() -> bool:
    """Turns token mode on when a token is at hand and the mode is unset.
    An explicit ``RAY_AUTH_MODE`` always wins. Returns whether token mode is on."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    available = bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path or DEFAULT_TOKEN_PATH).is_file()
    if available:
        os.environ["RAY_AUTH_MODE"] = "token"
    return available
