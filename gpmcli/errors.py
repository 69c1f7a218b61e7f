"""Typed errors. Each carries the process exit code documented in docs/interfaces.md#exit-codes-and-errors.

The CLI turns any :class:`GpmError` into one line on stderr and its exit code; library users catch them by type.
"""

from __future__ import annotations


class GpmError(Exception):
    """Base class: something the user can fix. ``exit_code`` is what ``gpm`` exits with."""

    exit_code = 1


class UsageError(GpmError):
    """Bad arguments or an input that does not fit (exit 2)."""

    exit_code = 2


class NotAvailableError(UsageError):
    """A command or option whose capability has not landed yet (exit 2)."""


class DownloadError(GpmError):
    """Repository, revision or file not found, no network, or offline and not cached (exit 3).

    From the Hub it says what failed: ``reason`` (``repo``, ``revision``, ``entry``, ``gated``, ``offline``,
    ``unreachable``, ``http``, ``network``), ``repo_id``, ``revision`` and ``filename`` (None when not known)."""

    exit_code = 3

    def __init__(self, message: str, *, reason: str | None = None, repo_id: str | None = None,
                 revision: str | None = None, filename: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.repo_id = repo_id
        self.revision = revision
        self.filename = filename


class IntegrityError(GpmError):
    """A file's sha256 does not match the pinned or announced hash (exit 4)."""

    exit_code = 4


class UnsafeFileError(GpmError):
    """A weight file needs arbitrary code to unpickle and ``--trust-pickle`` was not given (exit 5)."""

    exit_code = 5


class NumericalError(GpmError):
    """Particles became non-finite (exit 6)."""

    exit_code = 6

    def __init__(self, message: str, *, step: int | None = None, fraction: float | None = None):
        super().__init__(message)
        self.step = step
        self.fraction = fraction


class Interrupted(GpmError):
    """Stopped by Ctrl-C / SIGINT (exit 130). The message says what was kept and how to continue."""

    exit_code = 130


class BadReferenceError(UsageError):
    """A model or checkpoint reference that is none of the accepted forms (exit 2). ``ref`` is the text given,
    ``forms`` the forms :func:`gpmcli.refs.parse_ref` accepts."""

    def __init__(self, message: str, *, ref: str, forms: str):
        super().__init__(message)
        self.ref = ref
        self.forms = forms


class RoleMismatchError(UsageError):
    """A reference resolved to a network of another role than the one needed (exit 2): ``ref``, ``role`` (what it
    is, or the roles a bundle has, comma-separated) and ``needed``."""

    def __init__(self, message: str, *, ref: str, role: str | None, needed: str | None):
        super().__init__(message)
        self.ref = ref
        self.role = role
        self.needed = needed
