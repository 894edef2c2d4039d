"""``python -m metarl.plot RUN_DIR``: a run directory's PNG curves (``metarl.runs.plot``)."""
from metarl.runs.plot import main, plot_run

__all__ = ["main", "plot_run"]

if __name__ == "__main__":
    main()
