"""The ``rmbg`` command line: argument parsing, the subcommands' handlers, the files-to-folder job, input
discovery, progress and summary reporting, and signal handling. An application over the library: nothing
in rmbg_core below it imports it.

The entry point is :func:`rmbg_core.cli.main.main` (``rmbg``, ``python -m rmbg_core``, ``python -m rmbg_core.cli``).
"""
