"""One module per ``metagrad`` command: its docstring (a one-line summary, then the description; read without
importing torch, for ``metagrad --help``), ``add_arguments(parser)`` (its options, mostly built from its config dataclass) and
``run(args)``. Heavy modules are imported inside those two functions, when the command is the one asked for."""
