"""Analyses: pure metrics on arrays (`metrics`, `probes`, `fourier`) and run-level analyses."""
