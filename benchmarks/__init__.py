"""rnnfused's benchmark suite: ``python -m benchmarks`` (CLI: table, CSV, plots) and ``pytest benchmarks/
--benchmark-only`` (pytest-benchmark suite of the headline configs).

Modules: config (what one measurement is), presets (the grids; a new one is an entry in ``PRESETS``), workload
(same weights/inputs/upstream gradient for every implementation, packed variable-length input too), impls (what is
compared), variants (the table of kernel paths per backend; a new path is a row), check (the spot-check before
timing), timing (torch.utils.benchmark.Timer on the CPU, CUDA events on the GPU with or without an L2 flush; peak
memory), runner (``ShapeRun.checked``: the one path from an implementation to a timed call, for the CLI and the
pytest suite), report (table, CSV, column notes), plots (PNGs), progress, cli. The run's environment comes from
``rnnfused.info.environment`` (the same facts as ``python -m rnnfused.info``).
"""
