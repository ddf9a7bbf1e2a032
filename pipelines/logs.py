"""Logging set-up for the command line (library code only ever creates loggers)."""
import logging
import os
import warnings

_NOISY = ("distributed", "tornado", "asyncio", "datasets", "fsspec", "matplotlib", "PIL")


def setup_logging(verbosity: int = 0) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", force=True)
    # distributed configures its own loggers from dask's config when first imported: set it there too
    quiet = "warning" if verbosity < 2 else "debug"
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", quiet)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING) if verbosity < 2 else level)
    if verbosity == 0:
        warnings.filterwarnings("ignore", module="distributed")
