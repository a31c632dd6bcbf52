"""The one exception type that reaches the user as a one-line message (no traceback)."""


class UserError(Exception):
    """Bad input from the user: a value that is not allowed, a missing file, an unknown name.

    The message is one line naming the bad value and what is allowed; the command line prints it and exits
    with status 2. Everything else is a bug or a failed run and keeps its traceback.
    """
