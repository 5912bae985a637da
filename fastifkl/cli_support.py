"""Shared pieces of the command line: one-line errors with exit codes, list options, progress bars.

Kept apart from :mod:`fastifkl.cli` (the commands) so the command module stays short; nothing
here knows about a particular command.
"""
from __future__ import annotations

import functools
import sys

import typer

from .errors import FastifklError

__all__ = ["Bars", "fail", "handles_errors", "os_error_message", "progress", "reflow", "split_list", "tidy_help"]


def fail(msg: str, code: int = 2) -> None:
    """Print one line on stderr and exit with ``code``."""
    typer.echo(f"fastifkl: error: {msg}", err=True)
    raise typer.Exit(code)


def os_error_message(exc: OSError) -> str:
    """One line for an :class:`OSError`, naming its path(s): ``<path>: <problem>``."""
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return why
    if getattr(exc, "filename2", None) is not None:
        return f"{exc.filename} -> {exc.filename2}: {why}"
    return f"{exc.filename}: {why}"


def handles_errors(fn):
    """Turn the errors a user can act on into one stderr line and the documented exit code.

    A :class:`FastifklError` exits with its ``exit_code`` (2 for bad input, a bad model, an
    unwritable output; 1 for work lost to a dying worker); any other :class:`OSError` (a path
    the operating system refused) exits 2 naming the path; :class:`MemoryError` exits 1.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FastifklError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, getattr(exc, "exit_code", 2))
        except OSError as exc:
            fail(os_error_message(exc), 2)
        except MemoryError as exc:
            fail(f"out of memory ({str(exc).splitlines()[0] if str(exc) else 'MemoryError'}); try fewer workers", 1)
        except KeyboardInterrupt:
            typer.echo("fastifkl: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def split_list(value: str | None) -> list[str] | None:
    if value is None or value.strip() == "":
        return None
    return [v.strip() for v in value.split(",") if v.strip()]



def progress(enabled: bool):
    """A rich progress bar on a terminal (stderr), nothing in pipes or with --quiet."""
    import contextlib

    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)


class Bars:
    """Callback adapter: progress(stage, done, total) -> one rich task per stage."""

    def __init__(self, prog):
        self.prog = prog
        self.tasks = {}

    def __call__(self, stage, done, total):
        if self.prog is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.prog.add_task(stage, total=total)
        self.prog.update(self.tasks[stage], completed=done)


def reflow(doc: str | None) -> str | None:
    """A docstring as help text: each paragraph on one line (lines starting with "- " start a
    new line), so that rich wraps it to the terminal instead of keeping the source's breaks."""
    if not doc:
        return doc
    import inspect

    out = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines: list[str] = []
        for ln in para.splitlines():
            ln = ln.strip()
            if lines and not ln.startswith("- "):
                lines[-1] += " " + ln
            else:
                lines.append(ln)
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _plain_flags() -> None:
    """Typer's rich help shows a ``<bool>`` type beside every on/off flag (``--quiet <bool>``),
    which reads as if the flag took a value; show no type for flags (as click's plain help does)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - another typer layout: leave it as it is
        return
    show = getattr(TyperOption, "display_type_rich", None)
    if show is None or getattr(show, "_fastifkl_plain_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else show(self, ctx)

    display_type_rich._fastifkl_plain_flags = True
    TyperOption.display_type_rich = display_type_rich


def tidy_help(app: typer.Typer) -> typer.Typer:
    """Help text a new user can read: every command's docstring reflowed (:func:`reflow`), no
    ``<bool>`` beside flags."""
    for info in app.registered_commands:
        if info.help is None and info.callback is not None:
            info.help = reflow(info.callback.__doc__)
    cb = app.registered_callback
    if cb is not None and cb.help is None and cb.callback is not None:
        cb.help = reflow(cb.callback.__doc__)
    _plain_flags()
    return app
