"""Dataset builders: turn a public set's own layout into a manifest plus a `BuildReport`.

Every builder returns `BuiltManifest(manifest, report)`, which unpacks as `manifest, report`.

Example:
    >>> from keras_covidcxr.data.builders import from_class_folders
    >>> manifest, report = from_class_folders("my_dataset")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from keras_covidcxr.data.builders.bimcv import from_bimcv
from keras_covidcxr.data.builders.class_folders import from_class_folders
from keras_covidcxr.data.builders.covid_gr import from_covid_gr
from keras_covidcxr.data.builders.covidx import from_covidx_list
from keras_covidcxr.data.builders.darwin import draw_lung_mask, from_darwin_json
from keras_covidcxr.data.builders.ieee8023 import from_ieee8023_metadata
from keras_covidcxr.data.builders.midrc_ricord import from_midrc_ricord
from keras_covidcxr.data.builders.shared_cxr import from_shared_cxr_manifest

__all__ = [
    "draw_lung_mask",
    "from_bimcv",
    "from_class_folders",
    "from_covid_gr",
    "from_covidx_list",
    "from_darwin_json",
    "from_ieee8023_metadata",
    "from_midrc_ricord",
    "from_shared_cxr_manifest",
]
