"""Evaluation of explanations: metrics of faithfulness, robustness, complexity,
localisation and randomisation (Quantus, pytorch-grad-cam and Captum's definitions)."""
