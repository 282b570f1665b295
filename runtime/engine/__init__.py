"""The training engine: components, the jitted steps, the loop, checkpoints, hashing, resume."""
