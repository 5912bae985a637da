"""Exceptions that the command line turns into one clear line on stderr (exit code 2)."""


class FastifklError(Exception):
    """Base class of the errors that carry a user-facing one-line message."""


class InputError(FastifklError, ValueError):
    """Bad input: unreadable/empty/non-finite audio, wrong shape, too short, bad parameters."""


class ModelError(FastifklError, ValueError):
    """A model file that is missing, corrupt, truncated or from another format version."""
