"""The `sft-tui` command line (Typer): one module per command group; `main.main` is the console script."""
