"""Benchmarks: the optimizer step (``ravine bench step``), Muon (``ravine bench muon``) and compile cost
(``ravine bench compile``)."""
