"""Registered preset names (plain data: listing them never builds a model).

A model family registers its presets dict, `{name: {"metadata": {...}, "handle": ...}}`,
with `register_presets` (the pipeline does so in `keras_covidcxr/models/pipeline/__init__.py`,
which `import keras_covidcxr` runs). The registry reads the registered dicts live and
knows nothing of the classes behind them.
"""

_REGISTERED = []  # the families' presets dicts, in registration order


def register_presets(presets):
    """Make every name of `presets` listable and resolvable; registering the same dict twice is a no-op.

    Example:
        >>> register_presets({"my_preset": {"metadata": {"description": "mine"}, "handle": "/presets/mine"}})
        >>> registered_handle("my_preset")
        '/presets/mine'
    """
    if not any(registered is presets for registered in _REGISTERED):
        _REGISTERED.append(presets)


def _entries():
    entries = {}
    for presets in _REGISTERED:
        entries.update(presets)
    return entries


def list_presets():
    """{name: metadata} of every registered preset.

    Each metadata says whether trained weights exist: "trained" (True/False)
    and "weights" ("bundled" or "not published"), and where the name points: "handle"
    (a folder for bundled presets, hf://owner/repo@revision for the others).

    Example:
        >>> presets = list_presets()
        >>> presets["covidcxr_lite"]["weights"]
        'bundled'
    """
    return {name: {**entry["metadata"], "handle": entry["handle"]} for name, entry in _entries().items()}


def registered_entry(name):
    """The {"metadata", "handle"} entry of a registered preset name, or None for other strings."""
    return _entries().get(name)


def registered_handle(name):
    """The handle a registered preset name points to, or None for other strings."""
    entry = registered_entry(name)
    return entry["handle"] if entry else None
