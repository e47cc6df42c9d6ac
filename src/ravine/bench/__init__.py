"""Benchmarks: the optimizer step (``ravine bench step``) and compile cost (``ravine bench compile``)."""
