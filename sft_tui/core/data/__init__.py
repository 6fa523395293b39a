"""Datasets: reading files, recognising row formats, one normalised record for trainer and tools."""
