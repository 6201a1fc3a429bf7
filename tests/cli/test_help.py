import re

import typer
from covidcxr_cli.app import app
from typer.testing import CliRunner

runner = CliRunner()


def command_paths(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def test_every_help_page_reads_like_a_typer_cli():
    # typer 0.27+ prints type names as <bool>, <str>, <list[Path]> and required arguments as {images}...
    paths = list(command_paths(typer.main.get_command(app)))
    assert ("predict",) in paths and ("data", "build") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], terminal_width=120)
        assert result.exit_code == 0, (path, result.output)
        assert not re.search(r"<(bool|str|int|float|path|list\[)", result.output, re.IGNORECASE), (path, result.output)
        usage = next(line for line in result.output.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage


def test_predict_usage_names_its_images():
    result = runner.invoke(app, ["predict", "--help"], terminal_width=120)
    assert "covidcxr predict [OPTIONS] IMAGES..." in result.output


def test_version_prints_the_package_version():
    from keras_covidcxr import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"keras-covidcxr {__version__}"
