"""User-facing errors: one clear line on stderr, a non-zero exit, no traceback.

Anything a user can cause (a bad path, a malformed file, an absurd hyper-parameter)
raises `UserError` with a message that names the culprit. Command entry points wrap
their work in `exit_on_user_error`, which prints `error: <message>` and exits 2.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class UserError(ValueError):
    """A mistake in the user's input. The message names the file, field or value."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the same one-line errors (argparse prints its usage block and `prog: error:`)."""

    def error(self, message: str):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def exit_on_user_error(fn: F) -> F:
    """Turn `UserError` (and Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
