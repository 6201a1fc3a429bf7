"""The pipeline and its presets dict (kept import-light: listing presets never builds a model)."""
