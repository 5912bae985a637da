"""Exceptions that the command line turns into one clear line on stderr.

Each class carries the exit code the CLI uses for it (``exit_code``): 2 for what the user can
fix (bad input, a bad model file, an output path that cannot be written), 1 for work that
failed for another reason (a worker process that died twice on the same job).
"""


class FastifklError(Exception):
    """Base class of the errors that carry a user-facing one-line message."""

    exit_code = 2


class InputError(FastifklError, ValueError):
    """Bad input: unreadable/empty/non-finite audio, wrong shape, too short, bad parameters."""


class ModelError(FastifklError, ValueError):
    """A model file that is missing, corrupt, truncated or from another format version."""


class OutputError(FastifklError):
    """An output that cannot be written: a directory that cannot be made, no permission, a
    read-only file system, a directory in the way of the target name, a full disk.

    The message names the output path (never the temporary file).  ``errno`` is the errno of
    the underlying :class:`OSError` (``None`` when there was none).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    def __reduce__(self):
        return type(self), (str(self), self.errno)

    @property
    def whole_batch(self) -> bool:
        """True when every further output would fail too (full disk, quota, read-only fs)."""
        import errno as _errno

        return self.errno in (_errno.ENOSPC, _errno.EDQUOT, _errno.EROFS)


class WorkerLostError(FastifklError):
    """A job whose worker process died (killed, e.g. by the out-of-memory killer) on every try.

    ``index`` is the job's position in the map, ``item`` the job itself, ``reason`` how the
    worker died (e.g. "killed by signal 9 (SIGKILL); out of memory?").
    """

    exit_code = 1

    def __init__(self, message: str, index: int | None = None, item=None, reason: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.item = item
        self.reason = reason

    def __reduce__(self):
        return type(self), (str(self), self.index, self.item, self.reason)
