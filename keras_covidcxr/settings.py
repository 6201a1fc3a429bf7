"""Frozen-dataclass settings read back from JSON (preprocessing, input contract, training)."""

import dataclasses
import math
import numbers

import numpy as np

from keras_covidcxr.errors import ConfigError


def is_flag(value):
    """True or False (numpy's too)."""
    return isinstance(value, (bool, np.bool_))


def is_whole_number(value):
    """An integer that is not a flag (True is an int to Python, not a count)."""
    return isinstance(value, numbers.Integral) and not is_flag(value)


def is_finite_number(value):
    """A finite real number that is not a flag (nor a string of digits)."""
    return isinstance(value, numbers.Real) and not is_flag(value) and math.isfinite(value)


_KINDS = {  # a field's annotation -> (does a value fit, what to say it must be)
    bool: (is_flag, "true or false"),
    int: (is_whole_number, "a whole number"),
    float: (is_finite_number, "a finite number"),
    str: (lambda v: isinstance(v, str), "a string"),
    tuple: (lambda v: isinstance(v, (tuple, list)), "a list (a single string is not a list of names)"),
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
    """Refuse, with a ConfigError naming the field, a bool, int, float, str or tuple field holding another kind.

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
    return settings_from_dict(type(settings), {**values, **changes}, what)


def setting_differences(there, here, skip=(), where=""):
    """[(dotted key, value there, value here)] for each entry in which two JSON-like records differ, nested
    dicts compared entry by entry; keys in `skip` are left out at any depth.

    Example:
        >>> setting_differences({"rule": {"threshold": 0.7}}, {"rule": {"threshold": 0.5}})
        [('rule.threshold', 0.7, 0.5)]
    """
    differ = []
    for key in dict.fromkeys([*there, *here]):
        a, b = there.get(key), here.get(key)
        if key in skip or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            differ += setting_differences(a, b, skip, f"{where}{key}.")
        else:
            differ.append((f"{where}{key}", a, b))
    return differ
