"""Load tests and benchmarks: load engine, AnimatePortrait scenarios, Prometheus helpers, batching study,
reference comparison and the scale-out harness. Entry point: ``python -m load_tests``."""
