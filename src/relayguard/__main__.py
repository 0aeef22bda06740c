"""`python -m relayguard` — same as the `relayguard` command."""

from .cli import main

main()
