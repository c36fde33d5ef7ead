"""preview-worker: renders board-game tutorial preview videos from a Redis queue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("preview-worker")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
