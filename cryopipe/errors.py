"""One exception type for user-facing errors: the CLI prints it as one line and exits 2."""


class CryopipeError(Exception):
    """Bad input or configuration. The message names the file, column or config key."""
