"""Exit codes and the one exception hierarchy the CLI turns into them.

A mismatch is not an exception: verification returns a report. These are for runs that cannot
produce a trustworthy report at all.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nemoverify.checkpoint.problems import Problem  # problems.py imports this module


class ExitCode(IntEnum):
    """The documented process exit codes (README, `--help`)."""

    VERIFIED = 0
    FAILED = 1  # a mismatch, a missing or corrupted tensor, a manifest disagreement
    USAGE = 2
    INVALID = 3  # the checkpoint (or its storage, or a rank) could not be read or trusted
    CRASH = 4  # a bug in nemoverify, or a failure it did not foresee: no verdict, not the checkpoint's fault
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def interrupted_at_once(signum: int, frame: object) -> None:
    """SIGINT outside a run (while the CLI imports, parses, or prints): nothing to cancel or clean up,
    so the process ends with the documented 130 and one line, never a traceback."""
    import os
    import sys

    sys.stderr.write("interrupted\n")
    os._exit(int(ExitCode.INTERRUPTED))


class NemoverifyError(Exception):
    """Base of every error the CLI reports as a clean message."""

    exit_code: ExitCode = ExitCode.INVALID


class InvalidCheckpoint(NemoverifyError):
    """The checkpoint is malformed; `problems` lists everything found, not only the first."""

    def __init__(self, root: str, problems: list[Problem]) -> None:
        self.root = root
        self.problems = problems
        first = problems[0].render() if problems else "no readable checkpoint"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{root}: invalid checkpoint: {first}{more}")


class LoaderError(NemoverifyError):
    """A loader failed while reading a tensor (I/O error, streamer failure, storage error)."""


class DistributedError(NemoverifyError):
    """A rank crashed, hung past its timeout, or the process group could not be formed."""


class ManifestError(NemoverifyError):
    """A manifest file is unreadable or not a nemoverify manifest."""


class UsageError(NemoverifyError):
    """Options that contradict each other or name something that does not exist."""

    exit_code = ExitCode.USAGE


class StorageError(NemoverifyError):
    """Object storage failed: no such bucket, access denied, connection refused, a server gone."""


SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
)
# A SAS signature or an account key inside a URL or a connection string, whatever its encoding or
# parameter order (a library may rebuild the query string it was given).
_SECRET_PARAMETERS = re.compile(r"(?i)\b(sig=|AccountKey=|SharedAccessSignature=)[^&;\s'\"]+")


# A URL's userinfo (`https://user:secret@host`) and the values of its query (`?token=...`), wherever
# a URL appears in a message: an endpoint URL carries credentials that no variable name announces.
# Values stop at what ends a URL in text, JSON or XML (quotes, a backslash, <, >, whitespace).
_URL = re.compile(
    r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/\s?#@'\"<>\\]*@)?"
    r"(?P<rest>[^\s?#'\"<>\\]*)(?P<query>\?[^\s#'\"<>\\]*)?"
)
_QUERY_VALUE = re.compile(r"(?P<key>[?&;](?:[^=&;#]*=)?)[^&;#]+")


def _redact_url(match: re.Match[str]) -> str:
    userinfo = "***@" if match["userinfo"] else ""
    query = _QUERY_VALUE.sub(r"\g<key>***", match["query"]) if match["query"] else ""
    return f"{match['scheme']}{userinfo}{match['rest']}{query}"


def redact(text: str) -> str:
    """Credentials never reach output, reports or errors, whatever a library put in its message: the
    values of the variables that hold them, SAS signatures and account keys, and in every URL its
    userinfo and its query values."""
    import os

    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
            if name == "AZURE_STORAGE_SAS_TOKEN" and value.startswith("?"):
                text = text.replace(value[1:], "***")
    text = _URL.sub(_redact_url, text) if "://" in text else text
    return _SECRET_PARAMETERS.sub(r"\1***", text)
