"""The command line: thin Typer commands that parse arguments and call library functions.

``main.py`` assembles the app; each other module owns the commands of one capability and exposes
``register(app)``. Heavy libraries (torch, transformers) are imported inside commands so that
``dormant --help`` stays fast.
"""
