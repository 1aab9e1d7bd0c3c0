"""Speed and quality measurements; run each as ``python -m benchmarks.NAME`` from the repository root."""
