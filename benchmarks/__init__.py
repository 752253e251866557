"""Benchmarks of instruct-env (uses the library; the library never imports this package)."""
