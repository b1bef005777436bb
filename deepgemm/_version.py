"""The package version, in its own module: the JIT cache key reads it without importing the package
root."""

__version__ = "0.1.0"
