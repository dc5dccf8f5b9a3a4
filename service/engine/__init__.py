"""The visualization engine: capture, channel selection, reductions, rendering, encoding.

Plain functions and frozen dataclasses; no web framework, no request schemas.
"""
