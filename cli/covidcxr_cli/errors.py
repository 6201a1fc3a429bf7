"""One-line errors and the exit codes every command shares."""

import contextlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

import keras_covidcxr
from keras_covidcxr.quiet_import import import_keras_quietly, missing_dependency

EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN = 0, 1, 2

stderr = Console(stderr=True, highlight=False)
DEBUG = typer.Option(False, "--debug", help="Show full tracebacks.")


def exit_code(n_ok, n_failed):
    """0 when every input has a result, 1 when some failed and the rest have results, 2 when none has."""
    if not n_failed:
        return EXIT_OK
    return EXIT_SOME_FAILED if n_ok else EXIT_CANNOT_RUN


@contextlib.contextmanager
def reported_errors(debug=False, needs_keras=False):
    """Turn a CovidCXRError or an OS error (unwritable output, full disk) into one line on stderr and exit code 2.

    With `needs_keras`, Keras and its backend are imported first (quietly), so a missing backend is
    reported the same way. With `debug`, the traceback is printed instead.
    """
    try:
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
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)


def one_line(error):
    """An error as one line: `file: reason`, line breaks folded into spaces."""
    if isinstance(error, OSError) and not isinstance(error, keras_covidcxr.CovidCXRError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split())
