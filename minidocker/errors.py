"""One exception type for every mistake a user can make.

The command line turns a MinidockerError into one line on stderr and its exit
code; the Python API lets it propagate. Anything else is a bug in minidocker.
"""


class MinidockerError(Exception):
    """A clear, one-line error with the exit code docker would use."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class NotFound(MinidockerError):
    """No such image, container, network or volume."""


class Conflict(MinidockerError):
    """The request clashes with the current state (name in use, container running...)."""
