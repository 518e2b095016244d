"""CLI verbs; each module: NAME, HELP, add_arguments(parser), run(args) -> int."""
