"""A protocol-level cTrader Open API simulator (see server.py; CLI in cli.py)."""


def main(argv: list[str] | None = None) -> int:
    """`oracle sim-broker` entry point (imports the server only when called)."""
    from services.connector.sim.cli import main as cli_main

    return cli_main(argv)
