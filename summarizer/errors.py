"""The one exception type that reaches a user as a one-line message instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""
