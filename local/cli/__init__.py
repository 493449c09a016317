"""The `tasuki` command line and the one-machine harness.

commands    argument parsing and every subcommand; main() is the console script
supervisor  `tasuki local`: every process of the Procfile, watched from threads, output prefixed
serving     the functions over HTTP: one alone under gunicorn, or all in one process (`tasuki functions`)
runner      `tasuki run`: a checkout's flow in containers, no service needed
demo        `tasuki demo`: a sample repository, a rule and a signed push
"""

from tasuki.local.cli.commands import main

__all__ = ["main"]
