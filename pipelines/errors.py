"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""


class LmTransferError(Exception):
    """Base class: bad input, reported without a traceback."""


class RecipeError(LmTransferError):
    """The recipe (or an override) is wrong; raised before any work starts."""


class DataError(LmTransferError):
    """The dataset does not fit what the recipe asks of it."""
