"""Benchmarks that print numbers (never timed tests): ``python -m moa_lit.bench``
for speed and memory, ``python -m moa_lit.bench.quality`` for the model
ablation, ``python -m moa_lit.bench.report`` for the run report's build time."""
