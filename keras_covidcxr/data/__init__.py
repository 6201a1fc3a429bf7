"""Datasets: manifests, dataset builders, patient-level splits and the leakage audit.

Example:
    >>> from keras_covidcxr.data import (  # doctest: +SKIP
    ...     from_shared_cxr_manifest, find_near_duplicates, split_by_patient, audit_manifest, write_manifest)
    >>> manifest, report = from_shared_cxr_manifest("data/cxr/manifest.csv")  # doctest: +SKIP
    >>> # public sets re-upload films under new ids: keep the ids of one picture together (as `data split` does)
    >>> linked = [group.patient_ids for group in find_near_duplicates(manifest)]  # doctest: +SKIP
    >>> manifest = split_by_patient(manifest, fractions=(0.8, 0.1, 0.1), seed=0,  # doctest: +SKIP
    ...                             linked_patients=linked)
    >>> audit = audit_manifest(manifest)  # doctest: +SKIP
    >>> print(audit.summary()); write_manifest(manifest, "manifest.csv")  # doctest: +SKIP
"""

from keras_covidcxr.data.audit import CHECKS as AUDIT_CHECKS
from keras_covidcxr.data.audit import (
    MIN_IMAGE_SIDE,
    AuditFinding,
    AuditReport,
    audit_manifest,
    exclude_refused,
)
from keras_covidcxr.data.build_report import BuildReport, BuiltManifest, DroppedItem
from keras_covidcxr.data.builders import (
    draw_lung_mask,
    from_bimcv,
    from_class_folders,
    from_covid_gr,
    from_covidx_list,
    from_darwin_json,
    from_ieee8023_metadata,
    from_midrc_ricord,
    from_shared_cxr_manifest,
)
from keras_covidcxr.data.image_scan import ImageScan, patients_sharing_files, scan_images
from keras_covidcxr.data.manifest import (
    ADULT_AGE,
    LABELS,
    SPLITS,
    TASKS,
    VIEWS,
    DatasetError,
    Manifest,
    ManifestRow,
    read_manifest,
    write_manifest,
)
from keras_covidcxr.data.near_duplicates import (
    DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    MAX_HASH_DISTANCE,
    DuplicateGroup,
    ImageFingerprint,
    duplicate_groups,
    find_near_duplicates,
    perceptual_hash,
    thumbnail_fingerprint,
)
from keras_covidcxr.data.source_shortcut import SOURCE_SHORTCUT_AUC, SourceShortcut, source_shortcut
from keras_covidcxr.data.splits import (
    Fold,
    check_fractions,
    describe_splits,
    group_kfold,
    ids_differing_only_in_case,
    linked_patient_groups,
    patient_strata,
    split_by_patient,
)
from keras_covidcxr.data.vocabulary import normalize_label, normalize_view

__all__ = [
    "ADULT_AGE",
    "AUDIT_CHECKS",
    "DEFAULT_NEAR_DUPLICATE_THRESHOLD",
    "LABELS",
    "MAX_HASH_DISTANCE",
    "MIN_IMAGE_SIDE",
    "SOURCE_SHORTCUT_AUC",
    "SPLITS",
    "TASKS",
    "VIEWS",
    "AuditFinding",
    "AuditReport",
    "BuildReport",
    "BuiltManifest",
    "DatasetError",
    "DroppedItem",
    "DuplicateGroup",
    "Fold",
    "ImageScan",
    "ImageFingerprint",
    "Manifest",
    "ManifestRow",
    "SourceShortcut",
    "audit_manifest",
    "check_fractions",
    "describe_splits",
    "draw_lung_mask",
    "duplicate_groups",
    "exclude_refused",
    "find_near_duplicates",
    "from_bimcv",
    "from_class_folders",
    "from_covid_gr",
    "from_covidx_list",
    "from_darwin_json",
    "from_ieee8023_metadata",
    "from_midrc_ricord",
    "from_shared_cxr_manifest",
    "group_kfold",
    "ids_differing_only_in_case",
    "linked_patient_groups",
    "normalize_label",
    "normalize_view",
    "patient_strata",
    "patients_sharing_files",
    "perceptual_hash",
    "read_manifest",
    "scan_images",
    "source_shortcut",
    "split_by_patient",
    "thumbnail_fingerprint",
    "write_manifest",
]
