"""Frozen-dataclass settings read back from JSON (preprocessing, input contract, training)."""

import dataclasses

from keras_covidcxr.errors import ConfigError


def settings_from_dict(cls, values, what):
    """`cls(**values)`, refusing names that `cls` does not have with a ConfigError naming `what`.

    Example:
        >>> @dataclasses.dataclass
        ... class Example:
        ...     size: int = 1
        >>> settings_from_dict(Example, {"size": 2}, "example settings")
        Example(size=2)
    """
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what}: {sorted(unknown)}")
    return cls(**values)
