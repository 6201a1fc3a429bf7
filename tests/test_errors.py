import inspect

import keras_covidcxr
from keras_covidcxr import errors


def test_every_error_derives_from_one_base_and_is_exported():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    exceptions = [c for c in classes if issubclass(c, Exception) and not issubclass(c, Warning)]
    assert len(exceptions) >= 8
    for cls in exceptions:
        assert issubclass(cls, keras_covidcxr.CovidCXRError), cls
    for cls in classes:
        assert getattr(keras_covidcxr, cls.__name__) is cls and cls.__name__ in keras_covidcxr.__all__


def test_refusing_to_overwrite_is_also_a_file_exists_error():
    assert issubclass(keras_covidcxr.OutputExistsError, FileExistsError)
    problems = ["m.csv:3: no such file", "m.csv:4: no such file"]
    error = keras_covidcxr.DatasetError("2 bad rows", problems)
    assert error.problems == problems and str(error) == "2 bad rows"
