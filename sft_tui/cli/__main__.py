"""`python -m sft_tui.cli ...`: the same as the `sft-tui` console script."""

from sft_tui.cli.main import main

main()
