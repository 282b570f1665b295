"""Processes: executing a plan in this process, clusters, `exp launch`, sweeps, signals, output."""
