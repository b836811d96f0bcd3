"""Kaleido: the Redis-backed view counting and ML stream core of Kaleidoscope, on trio."""

__version__ = "0.1.0"
