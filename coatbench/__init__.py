"""coatbench: measure what CoAtNet's architecture choices cost on your hardware."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("coatbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
