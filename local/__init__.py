"""Tasuki's long-running processes and the one-machine harness: push bridge, Docker executor,
the `tasuki` command line, and the `make local` supervisor."""
