"""`python -m domicile` runs the CLI."""

from domicile.cli.main import main

main()
