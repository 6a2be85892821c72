"""Errors a user can cause (a bad flag value, a missing file, an unusable key or config file).

`tamiyo` prints their message as one line, ``error: <what is wrong and what to do>``, and exits with status
2, instead of a traceback.  Standard library only: cli/main.py imports it at every start.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and what to do."""
