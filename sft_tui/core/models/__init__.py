"""Models: presets, the config.json reader (modelspec), local weight files, the HF cache, the GPU table."""
