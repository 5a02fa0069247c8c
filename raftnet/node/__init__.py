"""The trio runtime around the pure core: ``Node``."""

from .node import Node

__all__ = ["Node"]
