"""Reading user-supplied text files (data files, task files, matrix files) with one-line errors.

Every reader of a file the user names goes through here for the problems that are about bytes rather than
content: an unknown encoding name, bytes that are not valid in the declared encoding, a file that cannot be
opened. The message names the file, the line and the problem; it never quotes the file's contents (a task file
may point at any file on the machine, and its lines are not ours to print), only the offending byte in hex.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from adapterbench.errors import UserError

ENCODING_HINT = "for example utf-8, utf-8-sig, latin-1 or cp1252"
DATA_HINT = "save the file as UTF-8 or declare its encoding (task file: data.encoding)"


def check_encoding(encoding: object, where: str) -> str:
    """``encoding`` if Python knows it, else a :class:`UserError` saying so (``where`` names its source)."""
    if not isinstance(encoding, str) or not encoding:
        raise UserError(f"{where}: encoding {encoding!r} is not allowed; give an encoding name, {ENCODING_HINT}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise UserError(f"{where}: unknown encoding {encoding!r}; give an encoding name, {ENCODING_HINT}") from None
    return encoding


def undecodable(path: Path | str, encoding: str, hint: str = DATA_HINT) -> UserError:
    """The error for a file holding bytes that ``encoding`` cannot decode, naming the first bad line.

    A streaming reader sees the failure at the decoder's chunk, not at the line, so the file is decoded again
    line by line here (only on this error path) to find the first line that fails.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    decoder.decode(line)
                except UnicodeDecodeError as exc:
                    bad = line[exc.start:exc.start + 1] if 0 <= exc.start < len(line) else b""
                    byte = f"byte 0x{bad[0]:02x}" if bad else "a byte sequence"
                    return UserError(f"{path}:{number}: {byte} is not valid {encoding} ({exc.reason}); {hint}")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return UserError(f"{path}: the file ends inside a {encoding} character ({exc.reason})")
    except OSError as exc:
        return cannot_read(path, exc)
    return UserError(f"{path}: not valid {encoding}")


def cannot_read(path: Path | str, exc: OSError) -> UserError:
    return UserError(f"cannot read {str(path)!r}: {exc.strerror or type(exc).__name__}")


@contextlib.contextmanager
def open_text(path: Path | str, encoding: str, where: str = "", newline: str | None = None,
              hint: str = DATA_HINT) -> Iterator[IO[str]]:
    """``open(path, encoding=...)`` whose decoding and opening problems become one-line :class:`UserError`.

    Errors raised by the caller's own parsing inside the ``with`` block pass through unchanged, except
    :class:`UnicodeDecodeError`, which only the decoder raises.
    """
    check_encoding(encoding, where or str(path))
    try:
        f = open(path, encoding=encoding, newline=newline)
    except OSError as exc:
        raise cannot_read(path, exc) from None
    try:
        with f:
            yield f
    except UnicodeDecodeError:
        raise undecodable(path, encoding, hint) from None


def read_text(path: Path | str, encoding: str = "utf-8", hint: str = DATA_HINT) -> str:
    """The whole file as text (see :func:`open_text`); a leading byte-order mark (Windows editors write one at
    the start of UTF-8 files) is not part of it."""
    with open_text(path, encoding, hint=hint) as f:
        return f.read().removeprefix("\ufeff")


def short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: enough to recognise a bad value, never a whole line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
