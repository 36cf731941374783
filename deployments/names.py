"""The names Ray Serve knows the deployments by. Operators see them in
``serve status``, ``t5electra status``, metrics and Serve config YAMLs, and
handles address them, so they are a contract: code and tests use these
constants. This module imports nothing, so tools that only read a cluster's
status can use it without loading Ray Serve."""

INGRESS = "Ingress"
TEXT_GENERATOR = "TextGenerator"
DETECTOR = "Detector"
MODELS = (TEXT_GENERATOR, DETECTOR)
"""The model deployments, whose replicas hold the weights."""
