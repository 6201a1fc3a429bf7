"""Ctrl-C and SIGTERM (`kill`, a scheduler's time limit) end a command with one line, not a traceback."""

import os
import signal
import time

import pytest
from covidcxr_cli.errors import reported_errors


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_ends_the_command_with_one_line_and_its_exit_code(signum, code, said, capsys):
    with pytest.raises(SystemExit) as exited:
        with reported_errors(interrupted_hint="out.csv keeps the results so far"):
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler interrupts this
    assert exited.value.code == code
    assert capsys.readouterr().err.strip() == f"{said}; out.csv keeps the results so far"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the default comes back after the command


def test_a_sigterm_handler_of_the_caller_stays_in_charge():
    caught = []
    previous = signal.signal(signal.SIGTERM, lambda *_: caught.append(True))
    try:
        with reported_errors():
            os.kill(os.getpid(), signal.SIGTERM)
        assert caught == [True]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_reader_that_stops_early_ends_the_command_quietly_with_exit_code_141():
    import subprocess
    import sys

    # `covidcxr predict ... | head -1`: rich's own handler exits 1, which means "some inputs failed" here
    code = "from covidcxr_cli.errors import StdoutConsole\nfor _ in range(100000): StdoutConsole().print('x' * 80)"
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.read(10)
    writer.stdout.close()
    assert writer.wait(timeout=60) == 141
    assert writer.stderr.read() == b""
