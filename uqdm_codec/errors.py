"""The codec's own error types: every failure a user can cause ends in one of these; the tests of
the numbers a user passes, shared so that every option refuses the same values; and how messages
name an option: as the command line spells it (--bytes) while a command runs, else as the library's
keyword (max_bytes=), so that neither kind of user is told of options they cannot give."""

import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_COMMAND_LINE: ContextVar[bool] = ContextVar("uqdm_command_line", default=False)


@contextmanager
def command_line() -> Iterator[None]:
    """While a command of the CLI runs: messages name options as it spells them (option)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def in_command_line() -> bool:
    return _COMMAND_LINE.get()


def set_command_line(on: bool) -> None:
    """For a worker process of a batch run from the command line (batch._init_worker)."""
    _COMMAND_LINE.set(on)


def option(cli: str, keyword: str) -> str:
    """`cli` (an option as the command line spells it) inside command_line, else `keyword` (the
    library's name for it)."""
    return cli if _COMMAND_LINE.get() else keyword


class UqdmError(Exception):
    """Base class: a one-line message meant for the user."""


class FormatError(UqdmError):
    """The bytes are not a valid .uqd file (foreign, corrupted or truncated header). `intact`:
    for damage found after the header, the length of the prefix before the damaged layer record
    or chunk (a file truncated there is valid), else None."""

    def __init__(self, message: str, intact: int | None = None) -> None:
        super().__init__(message)
        self.intact = intact


class ModelError(UqdmError):
    """The weights cannot be loaded, or do not match the file."""


class ImageError(UqdmError):
    """The input image cannot be read or is outside the supported range."""


class UqdmWarning(UserWarning):
    """Something the caller may want to know that is not an error: how an input image was converted
    (16-bit reduced to 8 bits, an opaque alpha channel left out, EXIF orientation applied) or damage
    after the part of a file that was read. The library functions give these as warnings (filter them
    with `warnings.simplefilter("ignore", UqdmWarning)`); the command line prints them as notes."""


class SyncError(UqdmError):
    """The decoder's arithmetic diverged from the encoder's, so the stream cannot be trusted."""


def first_line(exc: BaseException) -> str:
    """An exception's message for a one-line error: its first line, or its type's name if it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_whole(value: object) -> bool:
    """A whole number (NumPy's too), not a bool: True would be 1 step, 1 byte or seed 1, and 2.0
    would index layers as if it were 2."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number (NumPy's too; NaN and infinities are the caller's to refuse), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_flag(name: str, value: object) -> bool:
    """A yes/no option as a bool: True or False (NumPy's too), nothing else. keep_icc="no" kept the
    profile and fast=1 passed as True: any value was taken for its truth."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise UqdmError(f"{name} must be True or False, not {value!r}")
    return bool(value)


def check_callable(name: str, value: object) -> None:
    """A callback option: a function or None (a number there failed with a TypeError mid-way)."""
    if value is not None and not callable(value):
        raise UqdmError(f"{name} must be a function (or None), not {value!r}")


def warn(notes: list[str]) -> None:
    """Each note as a UqdmWarning pointing at the user's line: the first frame outside uqdm_codec
    and Pillow, whether the public function was called directly or through Pillow's save."""
    import importlib
    import os
    import sys
    import warnings

    folders = tuple(
        os.path.dirname(os.path.abspath(importlib.import_module(name).__file__)) + os.sep
        for name in (__package__, "PIL")
    )
    frame, level = sys._getframe(1), 2  # stacklevel 2: this function's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(folders):
        frame, level = frame.f_back, level + 1
    for note in notes:
        warnings.warn(note, UqdmWarning, stacklevel=level)
