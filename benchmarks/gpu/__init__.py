"""GPU figures in one prepared call: see benchmarks/gpu/README.md."""
