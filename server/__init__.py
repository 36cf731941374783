"""The t5electra server: settings, engines, command line and embedded checkpoints."""
