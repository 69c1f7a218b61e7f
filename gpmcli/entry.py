"""The ``gpm`` console script. Importing the CLI takes a moment; a Ctrl-C during it is one line and exit 130, not a
traceback."""

from __future__ import annotations

import sys


def main() -> None:
    from gpmcli.hostmem import tune_malloc

    tune_malloc()
    try:
        from gpmcli.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    app(prog_name="gpm")
