"""rnnfused's benchmark suite: ``python -m benchmarks`` (CLI: table, CSV, plots) and ``pytest benchmarks/
--benchmark-only`` (pytest-benchmark suite of the headline configs).

Modules: config (what one measurement is), presets (the grids), workload (same weights/inputs/upstream gradient
for every implementation), impls + variants (what is compared, and the hook through which backends add kernel
paths), check (the spot-check before timing), timing (timers, statistics, peak memory), runner (the loop), report
(table, CSV), plots (PNGs), progress, env_info (metadata), cli.
"""
