"""Executing a plan with JAX, Flax NNX, Optax and Orbax (everything with side effects)."""
