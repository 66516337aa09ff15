"""Errors the core raises for bad input: one type, so commands and the node can report them cleanly."""


class CGRSInputError(ValueError):
    """Bad input named precisely (file, row, field); commands exit non-zero, the node reports it."""
