"""`python -m uqdm_codec`: the `uqdm` command, where its script is not on PATH."""

from .cli import main

main()
