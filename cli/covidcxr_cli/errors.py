"""One-line errors and the exit codes every command shares."""

import contextlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

import keras_covidcxr

EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN = 0, 1, 2

stderr = Console(stderr=True, highlight=False)
DEBUG = typer.Option(False, "--debug", help="Show full tracebacks.")


@contextlib.contextmanager
def reported_errors(debug=False):
    """Turn a CovidCXRError (or a refusal to overwrite a file) into one line on stderr and exit code 2.

    With `debug`, the traceback is printed instead.
    """
    try:
        yield
    except (keras_covidcxr.CovidCXRError, FileExistsError) as error:
        if debug:
            stderr.print_exception()
        else:
            stderr.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)
