"""tangentlens: train a network and its linearization as a matched pair and compare internals."""

__version__ = "0.1.0"
