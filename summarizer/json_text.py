"""JSON from strangers: every way a payload can be malformed is one error type with a message
that says what is wrong, so servers answer 400 and readers count a bad record, never a crash.

The standard parser raises RecursionError (not a ValueError) on deeply nested input and a
plain ValueError on integers over 4,300 digits, and it accepts NaN and Infinity, which are
not JSON. This module folds all of those into `BadJSON`. It uses only the standard library, so
the Seldon image, which installs this package without its dependencies, can use it too.
"""

from __future__ import annotations

import json
from typing import Any


class BadJSON(ValueError):
    """Text that is not usable JSON; the message says why."""


def _no_constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a JSON value")


def parse_json(data: bytes | str) -> Any:
    """The value `data` holds (bytes must be UTF-8), or BadJSON saying what is wrong."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadJSON(f"it is not UTF-8 text (byte {error.start} cannot be decoded)") from None
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise BadJSON("it is nested too deeply") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise BadJSON(f"it is not valid JSON ({error.msg} at {where})") from None
    except BadJSON:
        raise
    except ValueError as error:
        if "digits" in str(error):  # Python converts integers of at most 4,300 digits
            raise BadJSON("it holds a number with more digits than any setting needs") from None
        raise BadJSON(f"it is not usable JSON ({error})") from None
