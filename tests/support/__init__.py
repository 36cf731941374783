"""What the tests share: the session's Serve application, a local Ray
cluster, a `t5electra serve` process, traffic that accounts for every call,
plain transformers as the reference, and a TLS relay."""

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
"""The checkout's root, for tests that read its files (configs, protos, manifests)."""
