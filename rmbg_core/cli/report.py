"""What a CLI job tells its user on stderr: a progress bar on a terminal (nothing when piped or logged),
one line per failed input, notes, and the closing summary (a line, or JSON for scripts).

Every message is one line: control characters in it (a newline or an escape sequence in a file name)
are printed escaped, as ``\\n`` or ``\\x1b``. The JSON summary keeps the real names (JSON escapes them).
"""

from __future__ import annotations

import json
import re
from typing import IO, Optional

from tqdm import tqdm

from .jobs import Summary, Task

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``, ``\\u2028``), so it prints as one line."""
    return _CONTROL.sub(lambda match: _escape(match.group()), text)


def _escape(character: str) -> str:
    code = ord(character)
    return _NAMED_ESCAPES.get(character) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def print_message(message: str, stream: IO[str]) -> None:
    """Print ``rmbg: <message>`` as one line on ``stream`` (outside a progress bar)."""
    stream.write(f"rmbg: {one_line(message)}\n")
    stream.flush()


class Reporter:
    """Progress and failure lines for one job; the bar shows only when ``stream`` is a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.bar: Optional[tqdm] = None

    def start(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="img", file=self.stream, dynamic_ncols=True,
                        disable=not _is_terminal(self.stream))

    def failed(self, message: str) -> None:
        self.note(f"failed: {message}")

    def note(self, message: str) -> None:
        tqdm.write(f"rmbg: {one_line(message)}", file=self.stream)

    def done(self, task: Task, error: str | None) -> None:
        if error is not None:
            self.failed(error)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, summary: Summary, json_stream: IO[str] | None = None) -> None:
        """The closing summary: JSON on ``json_stream`` when given, else one line on stderr."""
        self.close()
        if json_stream is not None:
            json.dump(summary.as_dict(), json_stream, indent=2)
            json_stream.write("\n")
            json_stream.flush()
        else:
            self.note(summary.line())


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
