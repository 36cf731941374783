"""Commands that join a Ray cluster present its token when one is at hand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from t5electra.tools.serving import ray_auth

pytestmark = pytest.mark.unit


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        # Set first, so that the value the code under test writes is undone too.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(ray_auth, "DEFAULT_TOKEN_PATH", tmp_path / "absent")
    return monkeypatch


def test_no_token_anywhere_leaves_the_mode_unset(clean: pytest.MonkeyPatch) -> None:
    assert not ray_auth.present_cluster_token()
    assert "RAY_AUTH_MODE" not in os.environ


@pytest.mark.parametrize("source", ["env", "path", "default"])
def test_a_token_turns_token_mode_on(clean: pytest.MonkeyPatch, tmp_path: Path, source: str) -> None:
    token = tmp_path / "token"
    token.write_text("secret")
    if source == "env":
        clean.setenv("RAY_AUTH_TOKEN", "secret")
    elif source == "path":
        clean.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    else:
        clean.setattr(ray_auth, "DEFAULT_TOKEN_PATH", token)
    assert ray_auth.present_cluster_token()
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_an_explicit_mode_wins(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("RAY_AUTH_MODE", "disabled")
    clean.setenv("RAY_AUTH_TOKEN", "secret")
    assert not ray_auth.present_cluster_token()
