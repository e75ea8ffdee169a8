"""Validation before timing counts: tensor comparison with per-dtype tolerances, task metrics."""
