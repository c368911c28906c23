"""Errors that more than one layer must recognise."""


class PoisonMessageError(ValueError):
    """A message that can never succeed: it goes to the DLQ without retries."""
