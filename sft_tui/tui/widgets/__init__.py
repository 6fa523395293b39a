"""Reusable widgets: the loss chart."""
