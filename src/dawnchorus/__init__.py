"""dawnchorus: cross-validated bird-sound classifiers from BirdCLEF-layout folders."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dawnchorus")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0+unknown"
