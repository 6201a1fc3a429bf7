"""One-line errors and the exit codes every command shares."""

import contextlib
import os
import signal
import sys
import threading

import typer
from rich.console import Console
from rich.markup import escape

import keras_covidcxr
from keras_covidcxr.io import printable_text
from keras_covidcxr.quiet_import import import_keras_quietly, missing_dependency

EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader stopped early (| head)
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT (Ctrl-C), 128 + SIGTERM


class StdoutConsole(Console):
    """The console for stdout. When its reader goes away (`| head`), the command stops as shell tools do:
    silently, with exit code 141 (rich's own handler exits 1, which here means that some inputs failed)."""

    def on_broken_pipe(self):
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush must not fail too
        raise SystemExit(EXIT_BROKEN_PIPE)


stderr = Console(stderr=True, highlight=False)
DEBUG = typer.Option(False, "--debug", help="Show full tracebacks.")


def exit_code(n_ok, n_failed):
    """0 when every input has a result, 1 when some failed and the rest have results, 2 when none has."""
    if not n_failed:
        return EXIT_OK
    return EXIT_SOME_FAILED if n_ok else EXIT_CANNOT_RUN


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a batch scheduler's time limit), raised where the command runs, as Ctrl-C is."""


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield  # a handler of the caller's stays in charge
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def reported_errors(debug=False, needs_keras=False, interrupted_hint=None):
    """Turn a CovidCXRError or an OS error (unwritable output, full disk) into one line on stderr and exit code 2.

    With `needs_keras`, Keras and its backend are imported first (quietly), so a missing backend is
    reported the same way. With `debug`, the traceback is printed instead. Ctrl-C and SIGTERM end the
    command with one line (plus `interrupted_hint`, e.g. how to resume) and exit codes 130 and 143.
    """
    try:
        with _sigterm_as_interrupt():
            if needs_keras:
                import_keras_quietly()
            yield
    except ImportError as error:
        missing = missing_dependency(error)
        if missing is None or debug:
            raise
        stderr.print(f"[bold red]error:[/] {escape(one_line(missing))}", soft_wrap=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except (keras_covidcxr.CovidCXRError, OSError) as error:
        if debug:
            stderr.print_exception()
        else:
            stderr.print(f"[bold red]error:[/] {escape(one_line(error))}", soft_wrap=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        stderr.print(escape(what if interrupted_hint is None else f"{what}; {interrupted_hint}"), soft_wrap=True)
        sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)


def print_error(error):
    """One "error: ..." line on stderr for a file that failed while the command goes on."""
    stderr.print(f"[red]error:[/] {escape(one_line(error))}", soft_wrap=True)


def one_line(error):
    """An error as one line: `file: reason`. The package's own errors are one line already: in them a line break or
    control character belongs to a file name, and is escaped (`printable_text`); other messages' line breaks are
    folded into spaces."""
    if isinstance(error, OSError) and not isinstance(error, keras_covidcxr.CovidCXRError) and error.filename:
        return printable_text(f"{os.fsdecode(error.filename)}: {error.strerror or error}")
    if isinstance(error, (str, keras_covidcxr.CovidCXRError)):  # a result's error is its message
        return printable_text(str(error))
    return printable_text(" ".join(str(error).split()))
