"""Running a regular expression a user typed, with bounds no pattern can break.

Python's `re` backtracks without limit and holds the GIL while it does: `(a|a)+$` against forty
`a`s and a `!` runs for hours and freezes every thread of the process (a gunicorn worker's
`/health` included). Patterns from users therefore go through the `regex` package, which
understands the same syntax, stops a match after a timeout, and — with `concurrent=True` —
releases the GIL while it matches, so the process's other threads keep answering meanwhile.

One `Deadline` bounds a whole operation (a bulk replace over 10,000 captions gets one budget,
not one per caption: CPU time inside each match, wall time between matches); the output is bounded too, so `find=""`, `replace=<1000 chars>` cannot turn
a caption into megabytes.
"""
from __future__ import annotations

import time

import regex

MAX_PATTERN_CHARS = 1000  # longer "patterns" are pasted text, not something to backtrack over
# Far above any sane pattern over a whole dataset's captions (they take milliseconds). The regex
# package counts the matching thread's CPU time, so on a busy machine the wall time is longer, but
# the work a request can make the server do is bounded all the same.
DEFAULT_BUDGET_S = 1.0


class PatternError(ValueError):
    """The pattern cannot be used; the message is fit to show the user."""


class PatternTimeout(PatternError):
    """Matching ran out of time: the pattern backtracks too much on this text."""


class OutputTooLarge(PatternError):
    """A replacement would grow the text past the allowed size."""


class Deadline:
    """A time budget shared by every match of one operation (seconds, monotonic clock)."""

    def __init__(self, seconds: float = DEFAULT_BUDGET_S) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; raises `PatternTimeout` once none are."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise _timeout(self.seconds)
        return left


def _timeout(seconds: float) -> PatternTimeout:
    return PatternTimeout(
        f"The regular expression was stopped after {seconds:g} s of matching: it backtracks too much on these captions "
        "(nested repeats such as (a+)+ or (a|a)+ do that). Simplify it, or search for plain text instead."
    )


def compile_pattern(pattern: str, *, ignore_case: bool = False) -> regex.Pattern:
    """Compile a user's pattern in Python `re` syntax (the `regex` module's V0 mode).

    Raises `PatternError` for an over-long or invalid pattern, naming the problem.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"The regular expression is {len(pattern):,} characters long; the limit is {MAX_PATTERN_CHARS:,}.")
    try:
        return regex.compile(pattern, regex.V0 | (regex.IGNORECASE if ignore_case else 0))
    except (regex.error, OverflowError, RecursionError) as exc:
        raise PatternError(f"Invalid regular expression: {exc}") from exc


def search(pattern: regex.Pattern, text: str, deadline: Deadline) -> regex.Match | None:
    """`pattern.search(text)` within the deadline; raises `PatternTimeout`."""
    try:
        return pattern.search(text, timeout=deadline.remaining(), concurrent=True)
    except TimeoutError:
        raise _timeout(deadline.seconds) from None


def sub(pattern: regex.Pattern, replacement: str, text: str, deadline: Deadline, *, max_chars: int) -> str:
    """`pattern.sub(replacement, text)` (Python `re` replacement syntax: `\\1`, `\\g<name>`).

    Stops with `PatternTimeout` when `deadline` runs out, `OutputTooLarge` as soon as the result
    passes `max_chars` characters, and `PatternError` for a replacement naming a missing group.
    """
    parts: list[str] = []
    size = 0
    end = 0
    try:
        matches = pattern.finditer(text, timeout=deadline.remaining(), concurrent=True)
        for match in matches:
            piece = match.expand(replacement)
            parts += (text[end:match.start()], piece)
            size += match.start() - end + len(piece)
            end = match.end()
            if size > max_chars:
                raise OutputTooLarge(f"The replacement would make a caption longer than {max_chars:,} characters.")
    except TimeoutError:
        raise _timeout(deadline.seconds) from None
    except (regex.error, IndexError) as exc:
        raise PatternError(f"Invalid replacement: {exc}") from exc
    if size + len(text) - end > max_chars:
        raise OutputTooLarge(f"The replacement would make a caption longer than {max_chars:,} characters.")
    parts.append(text[end:])
    return "".join(parts)
