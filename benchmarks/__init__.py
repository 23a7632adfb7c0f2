"""Paper reproductions and method comparisons: ``python -m benchmarks.<name> --size small|full``."""
