"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""


class LmTransferError(Exception):
    """Base class: bad input, reported without a traceback."""


class RecipeError(LmTransferError):
    """The recipe (or an override) is wrong; raised before any work starts."""


class DataError(LmTransferError):
    """The dataset does not fit what the recipe asks of it."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an error from another library (its message often goes on for pages)."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
