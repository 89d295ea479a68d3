"""What a CLI job tells its user on stderr: a progress bar on a terminal (nothing when piped or logged),
one line per failed input, notes, and the closing summary (a line, or JSON for scripts)."""

from __future__ import annotations

import json
from typing import IO, Optional

from tqdm import tqdm

from .jobs import Summary, Task


class Reporter:
    """Progress and failure lines for one job; the bar shows only when ``stream`` is a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.bar: Optional[tqdm] = None

    def start(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="img", file=self.stream, dynamic_ncols=True,
                        disable=not _is_terminal(self.stream))

    def failed(self, message: str) -> None:
        tqdm.write(f"rmbg: failed: {message}", file=self.stream)

    def note(self, message: str) -> None:
        tqdm.write(f"rmbg: {message}", file=self.stream)

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
