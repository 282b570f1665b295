"""The run directory and its records, read and written without JAX: paths, JSON lines, status."""
