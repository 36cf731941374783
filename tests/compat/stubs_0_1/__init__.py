"""The client stubs of t5-electra-serve 0.1 (before words, suggestions,
log-probabilities and the Models service), kept verbatim so that a test can
call the current server the way a client built then does."""
