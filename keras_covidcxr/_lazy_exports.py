"""Public names a package imports on first use (PEP 562), so importing the package stays light."""

import importlib

from keras_covidcxr.quiet_import import muted_native_stderr


def lazy_exports(namespace, exports, subpackages=()):
    """`(__getattr__, __dir__)` for the package whose globals are `namespace`.

    `exports` maps each public name to the module that defines it; `subpackages`
    names subpackages reachable as attributes. A name is imported on first access
    and then kept in `namespace`, so later lookups cost nothing.

    Example:
        >>> namespace = {"__name__": "keras_covidcxr.io", "__all__": ["load_image"]}
        >>> __getattr__, __dir__ = lazy_exports(namespace, {"load_image": "keras_covidcxr.io.image_loader"})
        >>> __getattr__("load_image").__module__, __dir__()
        ('keras_covidcxr.io.image_loader', ['load_image'])
    """
    package = namespace["__name__"]

    def __getattr__(name):
        if name in subpackages:
            return importlib.import_module(f"{package}.{name}")
        if name in exports:
            with muted_native_stderr():  # the first name that needs Keras loads its backend
                value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(namespace["__all__"])

    return __getattr__, __dir__
