"""medkt command line: one module per verb in :mod:`medkt.cli.commands`."""
