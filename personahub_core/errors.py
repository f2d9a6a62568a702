"""Errors the command line shows as one line, with a non-zero exit code and no traceback."""


class PersonaHubError(Exception):
    exit_code = 1


class UsageError(PersonaHubError):
    """The command was asked for something that does not exist (a task, an option, a value)."""

    exit_code = 2
