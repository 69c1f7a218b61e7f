"""The ``gpm`` command line: a thin Typer layer over :mod:`gpmcli.api`.

Results go to stdout, progress and messages to stderr. Any :class:`~gpmcli.errors.GpmError` becomes one line on stderr
and its documented exit code (docs/interfaces.md#exit-codes-and-errors); ``-v`` adds the traceback of unexpected
errors. :mod:`gpmcli.cli.base` holds the shared ``app``; each command module registers its commands on it.
"""

from __future__ import annotations

import sys

# Each command module registers its commands on ``app``, in this order (the order of `gpm --help`).
from gpmcli.cli import sample  # noqa: F401,I001
from gpmcli.cli import models  # noqa: F401
from gpmcli.cli import metrics  # noqa: F401
from gpmcli.cli import convert  # noqa: F401
from gpmcli.cli import train  # noqa: F401
from gpmcli.cli.base import (  # noqa: F401  (the names the console script and callers use)
    GpmTyper, app, err_console, info, log, out_console, progress_bar, state, warn)


def main() -> None:
    from gpmcli.hostmem import tune_malloc

    tune_malloc()  # the process is gpm's own (python -m gpmcli): reuse activation buffers, see gpmcli/hostmem.py
    code: int | str | None = 0
    try:
        app(prog_name="gpm")
    except SystemExit as e:
        code = e.code
    from gpmcli.distributed import finish

    finish(code if isinstance(code, int) else (0 if code is None else 1))  # under a launcher: clean exit, no return
    sys.exit(code)
