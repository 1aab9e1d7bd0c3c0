"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Something the user can fix: the message says what, which file, and what to do."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def first_line(exc: BaseException) -> str:
    """An exception's first line of text for a one-line message (its type's name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
