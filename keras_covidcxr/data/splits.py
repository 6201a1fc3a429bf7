"""Patient-level splits: no patient (or group of linked patients) ever lands in two splits.

One split serves both tasks: a patient's seg and cls rows go to the same split, and patients whose rows
name one file (two builders' ids for one film, or one file under two spellings) are kept together. Patients are
stratified by their label (the most frequent cls label, ties broken by first appearance;
patients with seg rows only form their own stratum) and their source, so each split keeps the
class mix of every collection: in a merged manifest where one hospital has many films per patient
and another one film each, a split by label alone would fill val and test with the second.

Example:
    >>> from keras_covidcxr.data.manifest import Manifest, ManifestRow
    >>> rows = [ManifestRow(f"{i}.png", "cls", f"p{i % 50}", label=("covid", "normal")[i % 2])
    ...         for i in range(200)]
    >>> split = split_by_patient(Manifest(rows), fractions=(0.8, 0.1, 0.1), seed=0)
    >>> sorted(split.counts("split"))
    [('test',), ('train',), ('val',)]
"""

import warnings
from collections import Counter, defaultdict
from typing import NamedTuple

import numpy as np

from keras_covidcxr.data.image_scan import patients_sharing_files
from keras_covidcxr.data.manifest import SPLITS, DatasetError, Manifest, ManifestRow
from keras_covidcxr.errors import ConfigError
from keras_covidcxr.io.file_identity import file_identity

SEG_ONLY_STRATUM = "(seg only)"


def _most_frequent(values):
    counts = Counter(values)
    best = max(counts.values())
    return next(value for value in values if counts[value] == best)  # first seen wins ties


def patient_strata(manifest, by=("label",)):
    """patient_id -> stratum: the patient's most frequent cls label (first seen wins ties).

    `by` adds other manifest fields (e.g. ("label", "source")): each is the most frequent value
    of the patient's rows ("unknown" when none has one), and the stratum joins them with "/".
    """
    for field in by:
        if field != "label" and field not in ManifestRow.__dataclass_fields__:
            raise ConfigError(f"cannot stratify by {field!r}: not a manifest field")
    labels, values = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for row in manifest:
        labels[row.patient_id]  # every patient gets an entry, seg-only ones too
        if row.task == "cls" and row.label is not None:
            labels[row.patient_id].append(row.label)
        for field in by:
            if field != "label" and getattr(row, field) is not None:
                values[row.patient_id][field].append(str(getattr(row, field)))
    strata = {}
    for patient, patient_labels in labels.items():
        parts = []
        for field in by:
            if field == "label":
                parts.append(_most_frequent(patient_labels) if patient_labels else SEG_ONLY_STRATUM)
            else:
                found = values[patient][field]
                parts.append(_most_frequent(found) if found else "unknown")
        strata[patient] = "/".join(parts)
    return strata


def ids_differing_only_in_case(patient_ids):
    """Tuples of patient ids that are one id in different letter case ("nih:10012", "NIH:10012"): one person,
    kept together by splits and counted as one by the audit.

    Example:
        >>> ids_differing_only_in_case(["nih:1", "NIH:1", "nih:2"])
        [('nih:1', 'NIH:1')]
    """
    spellings = defaultdict(list)
    for patient in dict.fromkeys(patient_ids):
        spellings[patient.casefold()].append(patient)
    return [tuple(ids) for ids in spellings.values() if len(ids) > 1]


def linked_patient_groups(patient_ids, links):
    """patient_id -> group key (one of its patient ids); patients named together in one of `links` share a group.

    Example:
        >>> linked_patient_groups(["a", "b", "c"], [("a", "c")])
        {'a': 'a', 'b': 'b', 'c': 'a'}
    """
    parent = {patient: patient for patient in patient_ids}

    def find(patient):
        while parent[patient] != patient:
            parent[patient] = parent[parent[patient]]
            patient = parent[patient]
        return patient

    for link in links:
        members = [patient for patient in link if patient in parent]
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    return {patient: find(patient) for patient in patient_ids}


def check_fractions(fractions):
    """(train, val, test) as floats; a `ConfigError` unless three non-negative numbers summing to 1."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ConfigError(
            f"fractions {fractions} must be three non-negative numbers (train, val, test) summing to 1"
        )
    return fractions


def split_by_patient(
    manifest, fractions=(0.8, 0.1, 0.1), seed=0, linked_patients=(), stratify_by=("label", "source"),
    keep_existing=False,
):
    """A copy of `manifest` with every row's `split` set to train / val / test.

    Within each stratum (`patient_strata(manifest, stratify_by)`: label and source by default) the
    patient groups are shuffled (seeded) and each goes to the split that, after taking it, is least
    filled relative to its target share of that stratum's images, so splits come out near
    `fractions` in images while patients stay whole.

    Args:
        manifest: the `Manifest` to split (existing split values are replaced, unless `keep_existing`).
        fractions: train, val, test shares of the images (paper: 80/10/10).
        seed: the shuffle seed; the same manifest and seed give the same split.
        linked_patients: groups of patient ids to keep together, e.g. ids that share a picture
            (`[g.patient_ids for g in find_near_duplicates(manifest)]`): public sets re-upload films.
            Patients whose rows name one file, or whose ids differ only in letter case, are always kept
            together.
        stratify_by: the manifest fields each split keeps the mix of; ("label",) gives the split made
            before 0.4.8 (the bundled preset's).
        keep_existing: rows that have a split keep it, and so do their patients' (and linked patients') new
            rows; only patients without one are placed, filling each split towards `fractions`. For a
            manifest that grew: earlier test patients stay in test.

    Raises:
        DatasetError: an empty manifest; with `keep_existing`, linked patients already in different splits.
    """
    fractions = check_fractions(fractions)
    if len(manifest) == 0:
        raise DatasetError("cannot split an empty manifest")
    strata = patient_strata(manifest, stratify_by)
    groups = linked_patient_groups(list(strata), [*linked_patients, *patients_sharing_files(manifest),
                                                  *ids_differing_only_in_case(strata)])
    images_per_patient = Counter(row.patient_id for row in manifest)
    kept = _existing_splits(manifest, groups) if keep_existing else {}

    # a linked group takes the stratum of its largest member so it is placed once
    members = defaultdict(list)
    for patient, group in groups.items():
        members[group].append(patient)
    order = {patient: index for index, patient in enumerate(strata)}
    group_stratum = {
        group: strata[max(patients, key=lambda p: (images_per_patient[p], -order[p]))]
        for group, patients in members.items()
    }
    rng = np.random.default_rng(seed)
    assignment = {}
    for stratum in sorted(set(group_stratum.values())):
        stratum_groups = sorted(group for group, s in group_stratum.items() if s == stratum)
        rng.shuffle(stratum_groups)
        sizes = {group: sum(images_per_patient[p] for p in members[group]) for group in stratum_groups}
        targets = np.asarray(fractions) * sum(sizes.values())
        filled = np.zeros(len(SPLITS))
        for group in [g for g in stratum_groups if g in kept]:
            filled[SPLITS.index(kept[group])] += sizes[group]
            for patient in members[group]:
                assignment[patient] = kept[group]
        for group in [g for g in stratum_groups if g not in kept]:
            with np.errstate(divide="ignore", invalid="ignore"):
                after = np.where(targets > 0, (filled + sizes[group]) / targets, np.inf)
            choice = int(np.argmin(after))
            filled[choice] += sizes[group]
            for patient in members[group]:
                assignment[patient] = SPLITS[choice]
    return manifest.with_rows(row.replace(split=assignment[row.patient_id]) for row in manifest)


def _existing_splits(manifest, groups):
    """{group: split} of the linked patient groups that already have a split; a `DatasetError` for a group in two."""
    found = defaultdict(dict)
    for row in manifest:
        if row.split:
            found[groups[row.patient_id]].setdefault(row.split, row.patient_id)
    torn = {group: splits for group, splits in found.items() if len(splits) > 1}
    if torn:
        described = "; ".join(", ".join(f"{patient} in {split}" for split, patient in splits.items())
                              for splits in list(torn.values())[:3])
        raise DatasetError(f"cannot keep the existing splits: {len(torn)} patient(s) or linked groups are already in "
                           f"several splits ({described}{'; ...' if len(torn) > 3 else ''}): a leak the earlier split "
                           "left; fix these rows, or split anew without keeping them (where only a shared picture "
                           "links them, not linking duplicates keeps them where they are, leak included: "
                           "--no-link-duplicates)")
    return {group: next(iter(splits)) for group, splits in found.items()}


class Fold(NamedTuple):
    """One cross-validation fold: the manifest to train on and the one to test on."""

    train: object
    test: object


def group_kfold(manifest, k=5, seed=0, linked_patients=()):
    """`k` patient-grouped, label-stratified folds (`Fold(train, test)` manifests), seeded.

    Uses scikit-learn's StratifiedGroupKFold with each row's patient stratum as its class and
    its group of linked patients as its group: `linked_patients` as in `split_by_patient`
    (near-duplicate pictures under two ids), patients whose rows name one file, and ids differing only in case.
    The `split` column of the returned manifests is left as it was.

    Raises:
        ConfigError: k < 2, or fewer patients than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if int(k) != k or k < 2:
        raise ConfigError(f"k={k!r}: need an integer number of folds >= 2")
    strata = patient_strata(manifest)
    if len(strata) < k:
        raise ConfigError(f"k={k}: the manifest has only {len(strata)} patients, fewer than the folds")
    groups = linked_patient_groups(list(strata), [*linked_patients, *patients_sharing_files(manifest),
                                                  *ids_differing_only_in_case(strata)])
    if len(set(groups.values())) < k:
        raise ConfigError(f"k={k}: the manifest's patients form only {len(set(groups.values()))} groups of linked "
                          "patients, fewer than the folds")
    patients = [groups[row.patient_id] for row in manifest]
    classes = [strata[row.patient_id] for row in manifest]
    splitter = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
    folds = []
    with warnings.catch_warnings():
        # "The least populated class has only n members": small strata cannot fill every fold
        warnings.simplefilter("ignore", UserWarning)
        for train_index, test_index in splitter.split(np.zeros(len(patients)), classes, groups=patients):
            folds.append(
                Fold(
                    manifest.with_rows(manifest[i] for i in train_index),
                    manifest.with_rows(manifest[i] for i in test_index),
                )
            )
    return folds


def describe_splits(manifest):
    """One line per split: images, patients, and images per task:label.

    Example: "train: 80 images, 40 patients (cls:covid 40, cls:normal 40)".
    """
    images, patients = defaultdict(Counter), defaultdict(set)
    for row in manifest:
        split = row.split or "(none)"
        images[split][f"{row.task}:{row.label or '-'}"] += 1
        patients[split].add(row.patient_id)
    lines = []
    for split in sorted(images, key=lambda s: (SPLITS + ("(none)",)).index(s)):
        counts = ", ".join(f"{key} {n}" for key, n in sorted(images[split].items()))
        lines.append(
            f"{split}: {sum(images[split].values())} images, {len(patients[split])} patients ({counts})"
        )
    return "\n".join(lines)


def refuse_shared_patients(rows_by_split):
    """Raise a DatasetError when one patient, or one image file, has rows in two of the splits (`{split: rows}`;
    files are compared, under any spelling of their path, when the rows are `Manifest`s): a leak that training
    would otherwise take as validation.

    Example:
        >>> rows = {"train": [ManifestRow("a.png", "cls", "p1")], "val": [ManifestRow("b.png", "cls", "p1")]}
        >>> refuse_shared_patients(rows)
        Traceback (most recent call last):
        ...
        keras_covidcxr.errors.DatasetError: patients in both the 'train' and 'val' splits (p1): a leak; `covidcxr data audit` lists them
    """
    names = list(rows_by_split)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            ids = [{r.patient_id.casefold(): r.patient_id for r in rows_by_split[name]} for name in (first, second)]
            shared = sorted(ids[1][key] for key in ids[1].keys() & ids[0].keys())
            if shared:
                raise DatasetError(f"patients in both the {first!r} and {second!r} splits ({', '.join(shared[:5])}"
                                   f"{', ...' if len(shared) > 5 else ''}): a leak; `covidcxr data audit` lists them")
            files = [_files_of(rows_by_split[name]) for name in (first, second)]
            shared = sorted(path for identity, path in files[1].items() if identity in files[0])
            if shared:
                raise DatasetError(f"image files in both the {first!r} and {second!r} splits, under other patient "
                                   f"ids or spellings ({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}): "
                                   "a leak; `covidcxr data audit` lists them")


def _files_of(rows):
    """{file identity: path} of rows that know their folder (a `Manifest`); {} for a plain list of rows."""
    if not isinstance(rows, Manifest):
        return {}
    return {file_identity(rows.resolve(row)): row.path for row in rows}
