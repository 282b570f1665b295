"""Proving a plan's reproducibility: reruns in fresh processes, ledger comparison, lockfiles."""
