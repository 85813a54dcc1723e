"""CLI subcommands. Each module exposes ``register(subparsers)``; see :mod:`pymm.cli`."""
