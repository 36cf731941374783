"""What the tests share: the session's Serve application, a local Ray
cluster, a `t5electra serve` process, traffic that accounts for every call,
plain transformers as the reference, and a TLS relay."""
