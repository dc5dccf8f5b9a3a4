"""Concepts of a layer: Deep Feature Factorization (NMF of its maps) and TCAV."""
