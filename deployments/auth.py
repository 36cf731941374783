"""Bearer-token authentication with a per-token RPC allow-list.

Callers send ``authorization: Bearer <token>``. Tokens come from a YAML (or
JSON) document, read from a file (a mounted Kubernetes Secret, say) and/or an
environment variable of the ingress process, never from the application's
arguments, which Ray shows in its status and dashboard::

    callers:
      - name: billing-service        # what logs and metrics show
        token: "a long random string"
        rpcs: [Generate, GenerateStream]   # or ["*"] for every RPC
                                           # (Tokenize and GetModelInfo too)

Only SHA-256 digests of the tokens are kept in memory, and a token never
appears in an error message or a log line; the caller's name does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from t5electra.protocol import RPC_NAMES
from t5electra.server.errors import PermissionDenied, Unauthenticated

ALL_RPCS = "*"


@dataclass(frozen=True)
class Caller:
    name: str
    rpcs: frozenset[str]

    def may_call(self, rpc: str) -> bool:
        return ALL_RPCS in self.rpcs or rpc in self.rpcs


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """The callers a server admits, looked up by the digest of their token."""

    def __init__(self, callers: dict[bytes, Caller]) -> None:
        self._callers = callers

    @classmethod
    def parse(cls, document: str, source: str) -> TokenTable:
        """Reads a ``callers`` document; ``source`` names it in errors."""
        data = yaml.safe_load(document) or {}
        entries = data.get("callers") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{source}: expected a non-empty 'callers' list")
        callers: dict[bytes, Caller] = {}
        for number, entry in enumerate(entries):
            where = f"{source}: callers[{number}]"
            if not isinstance(entry, dict) or set(entry) - {"name", "token", "rpcs"}:
                raise ValueError(f"{where}: expected the keys name, token and rpcs")
            name, token, rpcs = entry.get("name"), entry.get("token"), entry.get("rpcs", [ALL_RPCS])
            if not isinstance(name, str) or not name:
                raise ValueError(f"{where}: name must be a non-empty string")
            if not isinstance(token, str) or len(token) < 16:
                raise ValueError(f"{where} ({name}): token must be a string of at least 16 characters")
            if not isinstance(rpcs, list) or set(map(str, rpcs)) - RPC_NAMES - {ALL_RPCS}:
                raise ValueError(f"{where} ({name}): rpcs must list RPC names out of {sorted(RPC_NAMES)} or '*'")
            digest = _digest(token)
            if digest in callers:
                raise ValueError(f"{where} ({name}): the same token as {callers[digest].name}")
            callers[digest] = Caller(name, frozenset(rpcs))
        return cls(callers)

    @classmethod
    def load(cls, tokens_file: Path | None, tokens_env: str) -> TokenTable | None:
        """The table from the file and the environment variable together;
        None (authentication off) when neither is configured. A configured
        file that cannot be read is an error, not an open server."""
        documents = []
        if tokens_file is not None:
            documents.append((Path(tokens_file).read_text(), str(tokens_file)))
        if os.environ.get(tokens_env):
            documents.append((os.environ[tokens_env], f"${tokens_env}"))
        if not documents:
            return None
        merged: dict[bytes, Caller] = {}
        for document, source in documents:
            merged.update(cls.parse(document, source)._callers)
        return cls(merged)

    def authorize(self, authorization: str | None, rpc: str) -> Caller:
        """The caller behind an ``authorization`` header value, if it may call ``rpc``."""
        if not authorization:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        digest = _digest(token.strip())
        caller = next((c for d, c in self._callers.items() if hmac.compare_digest(d, digest)), None)
        if caller is None:
            raise Unauthenticated("unknown bearer token")
        if not caller.may_call(rpc):
            raise PermissionDenied(f"caller {caller.name!r} may not call {rpc}; allowed: {sorted(caller.rpcs)}")
        return caller
