"""Screens of the app: home (runs and GPUs) and monitor (one run, live)."""
