"""Frozen-dataclass settings read back from JSON (preprocessing, input contract, training)."""

import dataclasses
import math
import numbers

from keras_covidcxr.errors import ConfigError

_KINDS = {  # a field's annotation -> (does a value fit, what to say it must be)
    bool: (lambda v: v is True or v is False, "true or false"),
    int: (lambda v: isinstance(v, numbers.Integral) and v is not True and v is not False, "a whole number"),
    float: (lambda v: isinstance(v, numbers.Real) and v is not True and v is not False and math.isfinite(v),
            "a finite number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


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


def check_field_types(settings, what):
    """Refuse, with a ConfigError naming the field, a bool, int, float or str field holding another kind.

    Settings read from a preset's JSON, or given to `with_*`, fail here instead of deep inside a prediction.

    Example:
        >>> @dataclasses.dataclass
        ... class Example:
        ...     size: int = 1
        >>> check_field_types(Example(size="big"), "example settings")
        Traceback (most recent call last):
        ...
        keras_covidcxr.errors.ConfigError: example settings: size must be a whole number, got 'big'
    """
    for field in dataclasses.fields(settings):
        kind = _KINDS.get(field.type)
        value = getattr(settings, field.name)
        if kind is not None and not kind[0](value):
            raise ConfigError(f"{what}: {field.name} must be {kind[1]}, got {value!r}")


def replaced(settings, changes, what):
    """A copy of frozen-dataclass `settings` with `changes`, unknown names refused as `settings_from_dict` does."""
    values = {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)}
    unknown = set(changes) - set(values)
    if unknown:
        raise ConfigError(f"unknown {what}: {sorted(unknown)}")
    return type(settings)(**{**values, **changes})
