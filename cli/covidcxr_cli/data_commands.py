"""`covidcxr data build | merge | split | audit`: make leak-free dataset manifests.

Uses only the public API (`keras_covidcxr.data`, imported inside the commands, so `--help` stays fast).
Exit codes: 0 success (audit passed), 1 audit failed, 2 could not run (bad input, with one
`error: ...` line on stderr; `--debug` prints the traceback instead).

Examples:
    covidcxr data build shared-cxr data/cxr/manifest.csv --out manifest.csv
    covidcxr data build darwin v7/annotations --images v7/images --masks-out v7/masks --out seg.csv
    covidcxr data merge covidx.csv ricord.csv bimcv.csv --out all.csv
    covidcxr data split manifest.csv --out split.csv --fractions 0.8,0.1,0.1 --seed 0
    covidcxr data audit split.csv --json audit.json
"""

import collections
import contextlib
import enum
import functools
from pathlib import Path

import typer

import keras_covidcxr
from covidcxr_cli.errors import DEBUG, EXIT_OK, EXIT_SOME_FAILED, StdoutConsole, reported_errors
from covidcxr_cli.output_folders import check_writable_folder

EXIT_AUDIT_FAILED = EXIT_SOME_FAILED

data_app = typer.Typer(
    name="data",
    help="Build dataset manifests, split them by patient, and audit them for leaks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class DatasetKind(str, enum.Enum):
    """The layouts `covidcxr data build` reads."""

    covidx = "covidx"
    darwin = "darwin"
    ieee8023 = "ieee8023"
    class_folders = "class-folders"
    covid_gr = "covid-gr"
    midrc_ricord = "midrc-ricord"
    bimcv = "bimcv"
    shared_cxr = "shared-cxr"


def _consoles():
    from rich.console import Console

    return StdoutConsole(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False, soft_wrap=True)


def _reports_errors(command):
    """Run `command` inside `reported_errors`, with the traceback when it was given `--debug`."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with reported_errors(kwargs.get("debug", False)):
            return command(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _progress_bar(description):
    """A rich progress bar on stderr; yields the `progress(done, total)` callback the library takes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    _, stderr = _consoles()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,  # in a pipe or a log a finished bar leaves only an empty line
    ) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _require(value, option, kind):
    from keras_covidcxr import ConfigError

    if value is None:
        raise ConfigError(f"{kind.value} needs {option}")
    return value


def _check_outputs(inputs, outputs):
    """Refuse an output that names an input or another output (both lists of (what, path)): it would replace it
    (with --overwrite, a manifest by its own audit report); or that cannot be written. Checked before any work."""
    import os

    from keras_covidcxr import ConfigError

    seen = {os.path.realpath(path): what for what, path in inputs}
    for what, path in outputs:
        if path is not None:
            other = seen.setdefault(os.path.realpath(path), what)
            if other != what:
                raise ConfigError(f"{path}: is both {other} and {what}; write {what} elsewhere")
            check_writable_folder(Path(path).absolute().parent, f"{path}: cannot write {what}")


def _parse_class_map(text):
    """{folder: label} from "COVID=covid,Non-COVID=normal"."""
    from keras_covidcxr import ConfigError
    from keras_covidcxr.data.manifest import LABELS

    mapping = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        folder, equals, label = (piece.strip() for piece in part.rpartition("="))
        if not equals or not folder:
            raise ConfigError(f"--class-map {text!r}: write FOLDER=LABEL pairs separated by commas, e.g. "
                              "COVID=covid,Non-COVID=normal")
        if label not in LABELS:
            raise ConfigError(f"--class-map: {label!r} for folder {folder!r} is not a label; use one of {', '.join(LABELS)}")
        if folder in mapping:
            raise ConfigError(f"--class-map names folder {folder!r} twice")
        mapping[folder] = label
    return mapping


def _build(kind, source, images, masks_out, split, overwrite, progress=None, class_map=None, patient_id_pattern=None):
    from keras_covidcxr import ConfigError, data

    if (class_map or patient_id_pattern) and kind is not DatasetKind.class_folders:
        raise ConfigError("--class-map and --patient-id-pattern are for class-folders")
    if kind is DatasetKind.class_folders:
        return data.from_class_folders(source, class_map=class_map and _parse_class_map(class_map),
                                       patient_id_pattern=patient_id_pattern, progress=progress)

    if kind is DatasetKind.covidx:
        images = _require(images, "--images", kind)
        return data.from_covidx_list(source, images, split=split, progress=progress)
    if kind is DatasetKind.darwin:
        return data.from_darwin_json(
            source,
            _require(images, "--images", kind),
            _require(masks_out, "--masks-out", kind),
            overwrite=overwrite,
            progress=progress,
        )
    if kind is DatasetKind.ieee8023:
        return data.from_ieee8023_metadata(source, _require(images, "--images", kind), progress=progress)
    builders = {
        DatasetKind.covid_gr: data.from_covid_gr,
        DatasetKind.midrc_ricord: data.from_midrc_ricord,
        DatasetKind.bimcv: data.from_bimcv,
        DatasetKind.shared_cxr: data.from_shared_cxr_manifest,
    }
    return builders[kind](source, progress=progress)


@data_app.command("build")
@_reports_errors
def build(
    kind: DatasetKind = typer.Argument(
        ..., metavar="KIND", show_default=False,
        help="The dataset's layout: " + ", ".join(layout.value for layout in DatasetKind) + ".",
    ),
    source: Path = typer.Argument(
        ...,
        help="covidx: the list .txt; darwin: the JSON folder; ieee8023: "
        "metadata.csv; shared-cxr: manifest.csv; others: the dataset folder.",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The manifest CSV to write.", show_default=False),
    images: Path | None = typer.Option(None, "--images", help="Image folder (covidx, darwin, ieee8023)."),
    masks_out: Path | None = typer.Option(None, "--masks-out", help="Where darwin writes the lung masks."),
    split: str | None = typer.Option(
        None, "--split", help="covidx: the split of every row (train/val/test)."
    ),
    class_map: str | None = typer.Option(
        None, "--class-map", metavar="FOLDER=LABEL,...",
        help="class-folders: the label of each folder (covid, normal or pneumonia), e.g. "
        "COVID=covid,Non-COVID=normal; by default folder names are read as labels.",
    ),
    patient_id_pattern: str | None = typer.Option(
        None, "--patient-id-pattern", metavar="REGEX",
        help=r"class-folders: a regex searched in each file name; its first group is the patient id (e.g. "
        r"'^(patient\d+)_'). Without it each image counts as its own patient.",
    ),
    report: Path | None = typer.Option(None, "--report", help="Also write the build report as JSON here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    debug: bool = DEBUG,
):
    """Turn a public dataset's layout into a manifest CSV; print what was kept and dropped."""
    from keras_covidcxr import ConfigError
    from keras_covidcxr.data import write_manifest
    from keras_covidcxr.data.manifest import refuse_own_file

    stdout, _ = _consoles()
    if split is not None and split not in ("train", "val", "test"):
        raise ConfigError(f"--split {split!r}: use train, val or test")
    _check_outputs([(f"the {kind.value} input", source)],
                           [("the manifest (--out)", out), ("the build report (--report)", report)])
    for path in (out, report):  # refuse before building: darwin writes masks while it builds
        if path is not None and path.exists() and not overwrite:
            raise keras_covidcxr.OutputExistsError(f"{path}: already exists; pass --overwrite to replace it")
    with _progress_bar(f"reading {kind.value}") as progress:
        manifest, build_report = _build(kind, source, images, masks_out, split, overwrite, progress, class_map,
                                        patient_id_pattern)
    if not len(manifest):
        stdout.print(build_report.summary(), markup=False)
        raise keras_covidcxr.data.DatasetError(f"{source}: no image kept, so no manifest written (see why above)")
    if report is not None:
        refuse_own_file(manifest, report, "the build report")
    write_manifest(manifest, out, overwrite=overwrite)
    if report is not None:
        build_report.to_json(report, overwrite=overwrite)
    stdout.print(build_report.summary(), markup=False)
    stdout.print(f"wrote {out} ({len(manifest)} rows, {len(manifest.patient_ids())} patients)", markup=False)
    labels = {row.label for row in manifest if row.task == "cls"}
    if len(labels) == 1:
        _, stderr = _consoles()
        stderr.print(f"warning: every classification row is labelled {labels.pop()}: a classifier cannot be trained "
                     "or evaluated on one class"
                     + (" (folders that are not a known class were dropped: name their labels with --class-map)"
                        if kind is DatasetKind.class_folders and build_report.dropped else ""),
                     markup=False, soft_wrap=True)


# the near-duplicate settings, shared by split (which links) and audit (which checks)
_NEAR_DUPLICATE_THRESHOLD = typer.Option(
    0.97, "--near-duplicate-threshold", min=-1.0, max=1.0,
    help="Thumbnail correlation from which two files count as one picture (their perceptual hashes must also "
    "be close).",
)
_MAX_HASH_DISTANCE = typer.Option(
    6, "--max-hash-distance", min=0, max=64,
    help="Most perceptual-hash bits (of 64) such files may differ in. Cropped or bordered copies differ in "
    "12-14, but so do look-alike films: on the 3,248 shared films 10 bits at 0.93 already chain 12 patients "
    "into one group, 12 at 0.90 764. Loosen both only to review a small set's pairs.",
)


def _parse_fractions(text):
    from keras_covidcxr import ConfigError

    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--fractions {text!r}: write three numbers, e.g. 0.8,0.1,0.1") from None


@data_app.command("merge")
@_reports_errors
def merge_command(
    manifest_paths: list[Path] = typer.Argument(
        ..., metavar="MANIFEST...", help="Manifest CSVs to combine (e.g. one per public dataset).", show_default=False
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The combined manifest CSV to write.", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    debug: bool = DEBUG,
):
    """Combine manifests into one (paths re-expressed for OUT's folder); split it next with `covidcxr data split`."""
    from keras_covidcxr import ConfigError
    from keras_covidcxr.data import Manifest, read_manifest, write_manifest

    stdout, stderr = _consoles()
    _check_outputs([("an input manifest", path) for path in manifest_paths],
                           [("the merged manifest (--out)", out)])
    root = out.parent
    rows, first_seen, patients_of = [], {}, []
    for path in manifest_paths:
        manifest = read_manifest(path).rebased(root)
        for row in manifest:
            key = (row.path, row.task)
            if key in first_seen:
                raise ConfigError(f"{path}: {row.path} ({row.task}) is also in {first_seen[key]}; list each image once")
            first_seen[key] = path
            rows.append(row)
        patients_of.append((path, set(manifest.patient_ids())))
    merged = Manifest(rows, root)
    write_manifest(merged, out, overwrite=overwrite)
    for i, (path, patients) in enumerate(patients_of):  # one id in two datasets: the split keeps them together
        for other, others in patients_of[i + 1:]:
            shared = sorted(patients & others)
            if shared:
                stderr.print(
                    f"warning: {len(shared)} patient ids are in both {path} and {other} ({', '.join(shared[:3])}"
                    f"{', ...' if len(shared) > 3 else ''}); they count as the same patients. If they are not, "
                    "prefix the ids by their dataset (as `data build` does) before merging.",
                    markup=False, soft_wrap=True,
                )
    stdout.print(
        f"wrote {out} ({len(merged)} rows, {len(merged.patient_ids())} patients, from {len(manifest_paths)} manifests)",
        markup=False,
    )


@data_app.command("split")
@_reports_errors
def split_command(
    manifest_path: Path = typer.Argument(
        ..., metavar="MANIFEST", help="The manifest CSV to split.", show_default=False
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The split manifest CSV to write.", show_default=False),
    fractions: str = typer.Option(
        "0.8,0.1,0.1", "--fractions", help="train,val,test shares (paper: 80/10/10)."
    ),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed; the same seed gives the same split."),
    stratify: str = typer.Option(
        "label,source",
        "--stratify",
        help="Manifest fields every split keeps the mix of (each patient's most frequent value); "
        "'label' alone is the split made before 0.4.8.",
    ),
    link_duplicates: bool = typer.Option(
        True,
        "--link-duplicates/--no-link-duplicates",
        help="Read the images and keep patients that share a picture in one split.",
    ),
    threshold: float = _NEAR_DUPLICATE_THRESHOLD,
    max_hash_distance: int = _MAX_HASH_DISTANCE,
    drop_refused: bool = typer.Option(
        False,
        "--exclude-refused",
        help="Drop the rows `data audit` refuses for themselves (children, laterals, small, missing or "
        "unreadable files) before splitting, and say how many and why.",
    ),
    min_size: int = typer.Option(
        256, "--min-size", min=0, help="With --exclude-refused: smallest allowed image side in px (paper: 256)."
    ),
    allow_pediatric: bool = typer.Option(
        False, "--allow-pediatric", help="With --exclude-refused: keep patients under 18."
    ),
    keep_existing: bool = typer.Option(
        False,
        "--keep-existing",
        help="Rows that already have a split keep it (and their patients' new rows join them); only the rest "
        "are placed. For a manifest that grew: earlier test patients stay in test.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    debug: bool = DEBUG,
):
    """Assign train/val/test by patient, stratified by label and source (one split for seg and cls rows)."""
    from keras_covidcxr.data import (
        check_fractions,
        describe_splits,
        duplicate_groups,
        exclude_refused,
        patient_strata,
        read_manifest,
        scan_images,
        split_by_patient,
        write_manifest,
    )

    stdout, stderr = _consoles()
    _check_outputs([("the input manifest", manifest_path)], [("the split manifest (--out)", out)])
    if out.exists() and not overwrite:  # before the images are read and linked, not after
        raise keras_covidcxr.data.DatasetError(f"{out}: already exists; pass --overwrite to replace it")
    wanted = check_fractions(_parse_fractions(fractions))
    manifest = read_manifest(manifest_path)
    earlier = {row.path: row.split for row in manifest if row.split}
    if earlier and not keep_existing:
        stderr.print(f"note: {len(earlier)} of {manifest_path}'s {len(manifest)} rows already have a split; OUT gets a "
                     "new one (the input file is not changed; --keep-existing keeps them)", markup=False, soft_wrap=True)
    stratify_by = tuple(field.strip() for field in stratify.split(",") if field.strip())
    patient_strata(manifest, stratify_by)  # a wrong field is refused before the images are read
    _warn_about_patient_ids(manifest, stderr)
    if drop_refused:
        rows_before = len(manifest)
        with _progress_bar("checking images") as progress:
            manifest, dropped = exclude_refused(
                manifest, allow_pediatric=allow_pediatric, min_size=min_size, progress=progress
            )
        for check, findings in dropped.items():
            stdout.print(f"dropped {len(findings)} ({check}): " + "; ".join(f.message for f in findings[:3])
                         + ("; ..." if len(findings) > 3 else ""), markup=False)
        if dropped:  # the counts above are findings (a film and its mask each count): say the rows
            stdout.print(f"kept {len(manifest)} of {rows_before} rows", markup=False)
    linked = []
    if link_duplicates:
        with _progress_bar("looking for re-uploaded pictures") as progress:
            scans = scan_images(manifest, progress=progress)
        _report_unread(scans, manifest_path, stderr)
        groups = duplicate_groups([scan for scan in scans if scan.fingerprint is not None], threshold,
                                  max_hash_distance)
        linked = [group.patient_ids for group in groups if len(group.patient_ids) > 1]
        if linked:
            stdout.print(
                f"kept together {len(linked)} groups of patients that share a picture: "
                + "; ".join(", ".join(ids) for ids in linked),
                markup=False,
            )
    result = split_by_patient(
        manifest, fractions=wanted, seed=seed, linked_patients=linked, stratify_by=stratify_by,
        keep_existing=keep_existing,
    )
    write_manifest(result, out, overwrite=overwrite)
    into_train = [row.path for row in result if earlier.get(row.path) in ("val", "test") and row.split == "train"]
    if into_train:
        stderr.print(f"warning: {len(into_train)} rows that were in val or test are now in train (e.g. {into_train[0]}): "
                     "a model trained on the new split has seen films the old one was measured on; "
                     "--keep-existing keeps them where they were", markup=False, soft_wrap=True)
    stdout.print(describe_splits(result), markup=False)
    stdout.print(f"wrote {out}", markup=False)
    given = {row.split for row in result}
    empty = [name for name, fraction in zip(("train", "val", "test"), wanted) if fraction > 0 and name not in given]
    if empty:
        stderr.print(f"warning: {' and '.join(empty)} got no patient: {len(result.patient_ids())} patients "
                     f"(or groups kept together) are too few for --fractions {fractions}", markup=False)
    labelled = {(row.split, row.label) for row in result if row.task == "cls"}
    for label in sorted({label for _, label in labelled}):
        missing = [name for name in ("train", "val", "test") if name in given and (name, label) not in labelled]
        if missing:
            stderr.print(f"warning: no {label} film in {' or '.join(missing)}: too few {label} patients for "
                         f"--fractions {fractions}; a metric of that split says nothing about {label}", markup=False)


_PLACEHOLDER_IDS = {"", "nan", "none", "null", "na", "n/a", "unknown", "-", "?"}


def _warn_about_patient_ids(manifest, stderr):
    """Say which patient ids the split reads as one patient though written differently, or as one though they are
    placeholders shared by many films."""
    from keras_covidcxr.data import ids_differing_only_in_case

    same = ids_differing_only_in_case(manifest.patient_ids())
    if same:
        stderr.print(f"note: {len(same)} patient ids differ from another only in letter case (e.g. "
                     f"{' and '.join(same[0])}): each pair is read as one patient and kept in one split",
                     markup=False, soft_wrap=True)
    films = collections.Counter(row.patient_id for row in manifest)
    for patient in sorted(p for p in films if p.strip().casefold() in _PLACEHOLDER_IDS and films[p] > 1):
        stderr.print(f"warning: {films[patient]} rows have the patient id {patient!r}, a placeholder rather than an id: "
                     "they are read as one patient and kept in one split; give them their real ids (or one each)",
                     markup=False, soft_wrap=True)


def _report_unread(scans, manifest_path, stderr):
    """Say which images could not be read (they are not compared for re-uploads); none at all is an error."""
    unread = [scan for scan in scans if scan.missing or scan.error]
    if not unread:
        return
    first = unread[0]
    example = (f"{first.relative_path}: no such file (paths are relative to the manifest's folder)" if first.missing
               else first.error)
    if len(unread) == len(scans):
        raise keras_covidcxr.data.DatasetError(f"{manifest_path}: none of its {len(scans)} images could be read "
                                               f"(e.g. {example})")
    stderr.print(f"warning: {len(unread)} of {len(scans)} images could not be read and were not compared for "
                 f"re-uploads (e.g. {example}); `covidcxr data audit` lists them, --exclude-refused drops them",
                 markup=False, soft_wrap=True)


@data_app.command("audit")
def audit_command(
    manifest_path: Path = typer.Argument(
        ..., metavar="MANIFEST", help="The manifest CSV to audit.", show_default=False
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the full report as JSON here."),
    allow_pediatric: bool = typer.Option(False, "--allow-pediatric", help="Do not flag patients under 18."),
    min_size: int = typer.Option(
        256, "--min-size", min=0, help="Smallest allowed image side in px (paper: 256)."
    ),
    threshold: float = _NEAR_DUPLICATE_THRESHOLD,
    max_hash_distance: int = _MAX_HASH_DISTANCE,
    images: bool = typer.Option(
        True,
        "--images/--no-images",
        help="Decode images (sizes, near-duplicates); --no-images checks files exist only.",
    ),
    max_per_check: int = typer.Option(
        25, "--max-per-check", min=1,
        help="List at most this many findings per check (the --json report has them all).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the --json file if it exists."),
    debug: bool = DEBUG,
):
    """Check a manifest for patient and picture leaks across splits, children, laterals, small or missing files.

    Exit code 0 when it passes, 1 when it finds an error, 2 when it cannot run.
    """
    with reported_errors(debug):
        from keras_covidcxr.data import audit_manifest, read_manifest
        from keras_covidcxr.data.manifest import refuse_own_file

        stdout, _ = _consoles()
        _check_outputs([("the audited manifest", manifest_path)], [("the audit report (--json)", json_path)])
        manifest = read_manifest(manifest_path)
        if json_path is not None and json_path.is_dir():
            raise keras_covidcxr.ConfigError(f"{json_path}: a folder; --json takes the report file's name")
        if json_path is not None and json_path.exists() and not overwrite:
            raise keras_covidcxr.OutputExistsError(f"{json_path}: already exists; pass --overwrite to replace it")
        if json_path is not None:
            refuse_own_file(manifest, json_path, "the audit report")
        with _progress_bar("reading images") as progress:
            report = audit_manifest(
                manifest,
                allow_pediatric=allow_pediatric,
                min_size=min_size,
                near_duplicate_threshold=threshold,
                max_hash_distance=max_hash_distance,
                check_images=images,
                progress=progress,
            )
        if json_path is not None:
            report.to_json(json_path, overwrite=overwrite)
        stdout.print(report.summary(max_per_check=max_per_check), markup=False)
        if max(collections.Counter(finding.check for finding in report.findings).values(), default=0) > max_per_check:
            stdout.print(f"(lists cut at {max_per_check} per check: --max-per-check for more, --json for all)",
                         markup=False)
    raise typer.Exit(EXIT_OK if report.passed else EXIT_AUDIT_FAILED)
