"""Exit codes and the one exception hierarchy the CLI turns into them.

A mismatch is not an exception: verification returns a report. These are for runs that cannot
produce a trustworthy report at all.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented process exit codes (README, `--help`)."""

    VERIFIED = 0
    FAILED = 1  # a mismatch, a missing or corrupted tensor, a manifest disagreement
    USAGE = 2
    INVALID = 3  # the checkpoint (or its storage, or a rank) could not be read or trusted
    CRASH = 4  # a bug in nemoverify, or a failure it did not foresee: no verdict, not the checkpoint's fault
    NOT_FOUND = 5  # no checkpoint there: no such path, no .safetensors file in it, a repo id not in the cache
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
    BROKEN_PIPE = 141  # what reads stdout went away (`| head`), as shells report SIGPIPE


class NemoverifyError(Exception):
    """Base of every error the CLI reports as a clean message. `rule`: the id (`checkpoint.rules`)
    a report without a verdict files it under."""

    exit_code: ExitCode = ExitCode.INVALID
    rule: str = "error"


class LoaderError(NemoverifyError):
    """A loader failed while reading a tensor (I/O error, streamer failure, storage error)."""

    rule = "loader-error"


class DistributedError(NemoverifyError):
    """A rank crashed, hung past its timeout, or the process group could not be formed."""

    rule = "rank-failed"


class ManifestError(NemoverifyError):
    """A manifest file is unreadable or not a nemoverify manifest."""

    rule = "manifest-unreadable"


class DeploymentError(NemoverifyError):
    """The deployment to replay cannot be trusted to be the one named: its code is not one nemoverify knows."""

    rule = "vllm-code"


class UsageError(NemoverifyError):
    """Options that contradict each other or name something that does not exist."""

    exit_code = ExitCode.USAGE


class StorageError(NemoverifyError):
    """Object storage failed: no such bucket, access denied, connection refused, a server gone."""

    rule = "storage-error"
