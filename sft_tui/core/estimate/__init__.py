"""Estimates: peak memory broken down, fit against a GPU, limits, suggestions, time, the printed report."""
