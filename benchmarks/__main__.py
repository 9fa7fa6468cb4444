"""Entry point of ``python -m benchmarks`` (see benchmarks/cli.py); ``python -m benchmarks cells ...`` runs the cell
loops (benchmarks/cell_loop.py)."""
import sys

if sys.argv[1:2] == ["cells"]:
    from .cell_loop import main as cells_main

    sys.exit(cells_main(sys.argv[2:]))

from .cli import main  # noqa: E402

sys.exit(main())
