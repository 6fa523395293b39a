"""Pure logic of sft-tui: stdlib, psutil, pynvml and tomli only (no textual, no torch)."""
