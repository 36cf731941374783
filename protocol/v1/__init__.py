"""Stubs generated from ``protos/t5electra/v1`` by ``python -m t5electra.protocol.codegen``."""
