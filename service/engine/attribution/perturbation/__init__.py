"""Perturbation attributions: re-run the model on inputs with parts replaced by a baseline.

`ablation` runs the batched perturbed passes shared by every method; `features` builds the
parts (occlusion windows, grid and SLIC masks); `references` the baselines.
"""
