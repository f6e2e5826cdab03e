"""Splits, SBR cutoffs, metrics, paired tests, and the leakage and robustness experiments."""
