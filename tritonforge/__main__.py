"""`python -m tritonforge` runs the CLI."""

from tritonforge.cli.main import main

main()
