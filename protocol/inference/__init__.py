"""The Open Inference Protocol's generated stubs (package ``inference``): see protos/inference/."""
