"""The training child process: torch, transformers, peft, bitsandbytes and TRL live here, never in the UI."""
