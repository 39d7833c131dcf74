"""The one exception type users see as a one-line message."""


class MoAError(Exception):
    """Bad input or settings: the message names the file, column or setting and
    what was expected. Entry points print it on one line and exit non-zero."""
