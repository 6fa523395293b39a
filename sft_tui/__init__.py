"""sft-tui: a terminal cockpit for adapting open LLMs on one GPU box."""

__version__ = "0.1.0"
