"""Logging set-up for the command line (library code only ever creates loggers)."""
import logging
import warnings


def setup_logging(verbosity: int = 0) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", force=True)
    for noisy in ("distributed", "tornado", "asyncio", "datasets", "fsspec"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if verbosity == 0:
        warnings.filterwarnings("ignore", module="distributed")
