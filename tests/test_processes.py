"""The ports the tests and benches hand to the servers they start."""

from __future__ import annotations

import socket

import pytest

from t5electra.tools.bench.processes import free_port


@pytest.mark.unit
def test_free_ports_are_never_handed_out_twice() -> None:
    # A Ray node takes five ports picked before it binds any: the kernel may
    # offer one free port to consecutive probes, so distinctness is the
    # helper's to keep, over many more ports than one test session asks for.
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as server:
        server.bind(("127.0.0.1", ports[-1]))
