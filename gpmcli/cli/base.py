"""What every ``gpm`` command shares: the Typer ``app`` (errors to one line and an exit code), the consoles, ``-v``/
``-q`` and the progress bar. The commands live in the sibling modules, which :mod:`gpmcli.cli` imports."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from gpmcli.version import __version__
from gpmcli.errors import GpmError

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)
log = logging.getLogger("gpm")


class _State:
    verbosity = 0


state = _State()


#: set when a SIGTERM stopped the command (a scheduler's time limit, ``kill``): it then ends as a Ctrl-C does, one
#: line and what was kept, with exit code 143 (128 + SIGTERM) instead of 130
_terminated: list[int] = []


def _on_sigterm(signum, frame):
    _terminated.append(signum)
    raise KeyboardInterrupt


class GpmTyper(typer.Typer):
    """Typer app that turns gpm errors into one line and an exit code instead of a traceback."""

    def __call__(self, *args, **kwargs):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            self._run(*args, **kwargs)
        except SystemExit as e:
            if _terminated and e.code == 130:
                raise SystemExit(143) from None
            raise

    def _run(self, *args, **kwargs):
        usage_error, click_error, abort = _click_exceptions()
        try:
            # not standalone: the command line's own errors (a bad -n, an unknown option) come back here as
            # exceptions instead of Typer's framed box, and get the same one-line form as gpm's errors
            rv = super().__call__(*args, standalone_mode=False, **kwargs)
            sys.exit(rv if isinstance(rv, int) else 0)  # an int is the code of a typer.Exit inside the command
        except SystemExit as e:
            if e.code == 130:  # Ctrl-C outside a sampling loop (Typer exits 130 silently)
                err_console.print("interrupted")
            raise
        except GpmError as e:
            if not _quiet_here(e):
                from gpmcli.errors import Interrupted

                prefix = "" if isinstance(e, Interrupted) else "[bold red]error:[/] "
                err_console.print(f"{prefix}{escape(str(e))}", markup=True, soft_wrap=True)
            if hasattr(e, "reported"):
                e.reported()
            sys.exit(e.exit_code)
        except (KeyboardInterrupt, abort):
            err_console.print("interrupted")
            sys.exit(130)
        except usage_error as e:  # exit 2, as click's own
            cmd = e.ctx.command_path if e.ctx is not None else "gpm"
            if not e.format_message().strip():  # a bare group or command: click printed its help
                sys.exit(e.exit_code)
            err_console.print(f"[bold red]error:[/] {escape(e.format_message())} (see '{cmd} --help')", soft_wrap=True)
            sys.exit(e.exit_code)
        except click_error as e:
            err_console.print(f"[bold red]error:[/] {escape(e.format_message())}", soft_wrap=True)
            sys.exit(e.exit_code)
        except Exception as e:  # unexpected: one line, traceback with -v
            if state.verbosity > 0:
                err_console.print_exception()
            err_console.print(f"[bold red]error:[/] unexpected {type(e).__name__}: {escape(str(e))} "
                              "(run with -v for a traceback)", soft_wrap=True)
            sys.exit(1)


def _click_exceptions() -> tuple[type, type, type]:
    """Click's UsageError, ClickException and Abort as this Typer raises them (Typer may carry its own copy of click,
    so they are taken from the class hierarchy of ``typer.BadParameter`` and ``typer.Abort``)."""
    mro = {c.__name__: c for c in typer.BadParameter.__mro__}
    abort = next((c for c in typer.Abort.__mro__ if c.__name__ == "Abort" and c is not typer.Abort), typer.Abort)
    return mro["UsageError"], mro["ClickException"], abort


def _quiet_here(e: GpmError) -> bool:
    """True when another rank of a distributed run prints this error: one it reported for all ranks, or a usage error
    (the same arguments fail the same way on every rank, so rank 0's line is enough)."""
    if getattr(e, "gpm_quiet", False):
        return True
    from gpmcli.distributed import is_main_process
    from gpmcli.errors import UsageError

    return isinstance(e, UsageError) and not is_main_process()


app = GpmTyper(
    name="gpm",
    help="Sample from pretrained generative particle models: diffusion, GANs, Discriminator Flow, DiffFlow, DDLS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        out_console.print(f"gpm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More messages (-vv for debug)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors on stderr; no progress."),
):
    state.verbosity = -1 if quiet else verbose
    # gpm's own messages at INFO (DEBUG with -v); other libraries only warn unless -vv (no per-request HTTP lines).
    gpm_level = logging.ERROR if quiet else (logging.INFO if verbose == 0 else logging.DEBUG)
    root_level = logging.ERROR if quiet else (logging.WARNING if verbose < 2 else logging.DEBUG)
    logging.basicConfig(level=root_level, format="%(message)s", handlers=[_StderrHandler()], force=True)
    log.setLevel(gpm_level)
    logging.captureWarnings(True)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be swapped, e.g. by test runners)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def info(msg: str) -> None:
    """A message on stderr unless -q."""
    if state.verbosity >= 0:
        err_console.print(msg, soft_wrap=True, markup=False)


def warn(msg: str) -> None:
    if state.verbosity >= 0:
        err_console.print(f"[yellow]warning:[/] {escape(msg)}", soft_wrap=True)


def progress_bar(total: int, description: str, enabled: bool = True):
    """A rich progress bar on stderr (disabled with -q, when stderr is not a terminal and verbosity is 0, and on
    every rank but 0 of a distributed run: ``enabled=False``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, disable=state.verbosity < 0 or not enabled, transient=False)
