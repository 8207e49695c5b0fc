"""The one error type a user can cause; the CLI prints it as a single line."""

import contextlib
import sys
import warnings
from typing import Any


class SegbenchError(Exception):
    """A user-facing error: bad manifest, missing file, wrong hash, unknown model, no GPU."""


def located(file, model=None, field=None) -> str:
    """Prefix naming where a problem is: 'zoo/fcn.yaml: model 'x': field 'Test.mode''."""
    parts = [str(file)]
    if model is not None:
        parts.append(f"model {model!r}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)


def one_line(text: Any, limit: int = 200) -> str:
    """Any text (an exception's, a value from a file) as one line of at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class SegbenchWarning(UserWarning):
    """Something a reader skipped and went on without (an unreadable record); the CLI prints it as one line."""


@contextlib.contextmanager
def one_line_warnings():
    """Within the block every SegbenchWarning prints as 'segbench: warning: ...' on stderr, each time it occurs."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SegbenchWarning):
            print(f"segbench: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        default = warnings.showwarning
        warnings.simplefilter("always", SegbenchWarning)
        warnings.showwarning = show
        yield
