"""The `covidcxr` command line (typer + rich); it uses only keras_covidcxr's public API."""
