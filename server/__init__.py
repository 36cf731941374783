"""The engines (T5Generator, ReplacementDetector), their requests, results
and failures, validation, tokenization, settings and the embedded
checkpoints: no Ray, no gRPC, nothing of the wire."""
