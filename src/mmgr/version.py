"""The package version (its own module: what records it imports nothing else of mmgr)."""

__version__ = "0.1.0"
