"""Bearer tokens and the per-token RPC allow-list, on their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from t5electra.deployments.auth import TokenTable
from t5electra.server.errors import PermissionDenied, Unauthenticated

pytestmark = pytest.mark.unit

TOKENS = """
callers:
  - name: billing
    token: billing-token-0123456789
    rpcs: [Generate, GenerateStream]
  - name: ops
    token: ops-token-0123456789abcdef
    rpcs: ["*"]
"""


@pytest.fixture
def table() -> TokenTable:
    return TokenTable.parse(TOKENS, "test")


def test_known_token_may_call_its_rpcs(table: TokenTable) -> None:
    assert table.authorize("Bearer billing-token-0123456789", "Generate").name == "billing"
    assert table.authorize("bearer  ops-token-0123456789abcdef ", "DetectReplacements").name == "ops"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic dXNlcjpwYXNz", "Bearer <token>"),
        ("Bearer", "Bearer <token>"),
        ("Bearer not-a-known-token-at-all", "unknown bearer token"),
    ],
)
def test_missing_or_unknown_token_is_unauthenticated(table: TokenTable, header: str | None, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message) as caught:
        table.authorize(header, "Generate")
    assert "not-a-known-token" not in str(caught.value)


def test_rpc_outside_the_allow_list_is_permission_denied(table: TokenTable) -> None:
    with pytest.raises(PermissionDenied, match="'billing' may not call DetectReplacements") as caught:
        table.authorize("Bearer billing-token-0123456789", "DetectReplacements")
    assert "billing-token" not in str(caught.value)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{}", "non-empty 'callers' list"),
        ("callers: [{name: a, token: short}]", "at least 16 characters"),
        ("callers: [{name: a, token: 0123456789abcdefgh, rpcs: [Delete]}]", "rpcs must list"),
        ("callers: [{name: a, token: 0123456789abcdefgh, rpcs: Generate}]", "rpcs must list"),
        ("callers: [{token: 0123456789abcdefgh}]", "name must be"),
        ("callers: [{name: a, token: 0123456789abcdefgh, role: admin}]", "expected the keys"),
        (
            "callers: [{name: a, token: 0123456789abcdefgh}, {name: b, token: 0123456789abcdefgh}]",
            "same token as a",
        ),
    ],
)
def test_malformed_token_documents_are_refused(document: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        TokenTable.parse(document, "tokens.yaml")
    assert "0123456789abcdefgh" not in str(caught.value)


def test_file_and_environment_merge_and_absence_means_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T5ELECTRA_AUTH_TOKENS", raising=False)
    assert TokenTable.load(None, "T5ELECTRA_AUTH_TOKENS") is None
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS)
    monkeypatch.setenv("T5ELECTRA_AUTH_TOKENS", "callers: [{name: env, token: env-token-0123456789}]")
    table = TokenTable.load(path, "T5ELECTRA_AUTH_TOKENS")
    assert table is not None
    assert table.authorize("Bearer env-token-0123456789", "Generate").name == "env"
    assert table.authorize("Bearer billing-token-0123456789", "Generate").name == "billing"


def test_configured_but_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TokenTable.load(tmp_path / "absent.yaml", "T5ELECTRA_AUTH_TOKENS")
