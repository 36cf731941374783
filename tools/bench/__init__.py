"""``t5electra bench``: the engine's own limit, the served system, and the
plain per-request gRPC server a team would otherwise write, measured side by
side in one run on one machine."""
