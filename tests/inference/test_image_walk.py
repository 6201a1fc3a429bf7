import os
from pathlib import Path

import numpy as np
import pytest

from keras_covidcxr import find_images
from keras_covidcxr.inference.image_walk import path_is_there


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_walked_recursively_in_sorted_order_keeping_only_images(tmp_path):
    dicom = b"\0" * 128 + b"DICM" + b"rest"
    for name in ("b.png", "a.PNG", "c.jpeg", "sub/z.tif", "sub/deeper/y.dcm", "sub2/x.bmp"):
        _touch(tmp_path / name)
    _touch(tmp_path / "1.2.840.113619.5", dicom)  # DICOM named by UID
    _touch(tmp_path / "IM0001", dicom)  # DICOM without a suffix
    for ignored in (".hidden.png", ".git/objects/x.png", "notes.txt", "README", "report.csv", "1.2.3.4"):
        _touch(tmp_path / ignored)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.png")  # reading it would block forever
    found = [path.relative_to(tmp_path).as_posix() for path in find_images([tmp_path])]
    assert found == [
        "1.2.840.113619.5",
        "IM0001",
        "a.PNG",
        "b.png",
        "c.jpeg",
        "sub/z.tif",
        "sub/deeper/y.dcm",
        "sub2/x.bmp",
    ]


def test_a_dicom_discs_index_is_skipped_and_a_dicom_file_without_preamble_is_found(tmp_path):
    _touch(tmp_path / "DICOMDIR", b"\0" * 128 + b"DICM" + b"rest")  # the disc's index, not a film
    _touch(tmp_path / "IMAGES" / "IM0001", b"\x02\x00\x00\x00UL\x04\x00" + b"\0" * 200)  # group 0002, no preamble
    _touch(tmp_path / "IMAGES" / "IM0002", b"\x08\x00\x05\x00CS\n\x00ISO_IR 100")  # group 0008, no file meta
    _touch(tmp_path / "IMAGES" / "IM0003", b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100")  # implicit VR
    _touch(tmp_path / "IMAGES" / "notes", b"\x08\x00 is not a tag here")
    _touch(tmp_path / "IMAGES" / "pixels.raw", np.array([8, 7, 10000, 20000], "<u2").tobytes())  # a raw dump
    found = [path.relative_to(tmp_path).as_posix() for path in find_images([tmp_path])]
    assert found == ["IMAGES/IM0001", "IMAGES/IM0002", "IMAGES/IM0003"]


def test_named_files_are_kept_as_given_in_order_and_listed_once(tmp_path):
    folder = tmp_path / "scans"
    first, second = _touch(folder / "a.png"), _touch(folder / "b.png")
    notes = _touch(tmp_path / "notes.txt")
    missing = tmp_path / "missing.png"
    found = find_images([second, folder, missing, notes, first])
    assert found == [second, first, missing, notes]  # named files kept even if odd: the loader reports them


def test_one_path_and_an_empty_folder(tmp_path):
    image = _touch(tmp_path / "a.png")
    assert find_images(str(image)) == [image]
    (tmp_path / "empty").mkdir()
    assert find_images([tmp_path / "empty"]) == []


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlinked_folders_are_not_followed(tmp_path):
    _touch(tmp_path / "real" / "a.png")
    os.symlink(tmp_path / "real", tmp_path / "link")  # a loop-prone layout: real/ reached twice
    found = [path.relative_to(tmp_path).as_posix() for path in find_images([tmp_path])]
    assert found == ["real/a.png"]


def test_the_packages_own_overlays_are_skipped_and_suffixless_png_and_jpeg_films_are_found(tmp_path):
    import numpy as np
    from PIL import Image

    from keras_covidcxr.io.overlays import save_overlay_png

    film = np.zeros((8, 8), "uint8")
    Image.fromarray(film).save(tmp_path / "chest.png")
    Image.fromarray(film).save(tmp_path / "scan001", format="PNG")  # a PNG named without a suffix
    Image.fromarray(film).save(tmp_path / "scan002", format="JPEG")
    save_overlay_png(tmp_path / "overlays" / "chest_mask.png", np.zeros((8, 8, 3), "uint8"))  # --overlays inside
    Image.fromarray(film).save(tmp_path / "lung_mask.png")  # a user's film whose name ends like an overlay's
    found = [path.relative_to(tmp_path).as_posix() for path in find_images([tmp_path])]
    assert found == ["chest.png", "lung_mask.png", "scan001", "scan002"]


def test_a_file_and_a_symlink_to_it_are_one_file(tmp_path):
    film = _touch(tmp_path / "a" / "x.png")
    (tmp_path / "link.png").symlink_to(film)
    found = [path.relative_to(tmp_path).as_posix() for path in find_images([tmp_path / "a", tmp_path])]
    assert found == ["a/x.png"]


def test_a_hard_link_is_the_same_film_once(tmp_path):
    film = _touch(tmp_path / "a" / "x.png")
    os.link(film, tmp_path / "copy_of_x.png")  # a second name, no symlink
    _touch(tmp_path / "b.png")
    found = [path.relative_to(tmp_path).as_posix() for path in find_images([tmp_path])]
    assert found == ["b.png", "copy_of_x.png"]  # a folder's own files come before its subfolders
    assert find_images([tmp_path / "missing.png", tmp_path / "missing.png"]) == [tmp_path / "missing.png"]


def test_what_a_folder_walk_cannot_reach_is_listed_for_the_loader_to_name(tmp_path, monkeypatch):
    import pathlib

    from keras_covidcxr import ImageDecodeError
    from keras_covidcxr.io.image_loader import check_regular_file

    _touch(tmp_path / "ok" / "a.png")
    _touch(tmp_path / "locked" / "b.png")  # cannot be listed
    _touch(tmp_path / "shut" / "c.png")  # can be listed, not entered
    (tmp_path / "ok" / "broken.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "ok" / "loop.png").symlink_to(tmp_path / "ok" / "loop.png")
    (tmp_path / "ok" / "broken_notes").symlink_to(tmp_path / "gone")  # no image name: not ours to report
    scandir, is_file = os.scandir, pathlib.Path.is_file

    def refusing_scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    def refusing_is_file(path):
        if path.parent.name == "shut":
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    is_dir, lstat = pathlib.Path.is_dir, os.lstat

    def refusing_is_dir(path):
        if path.parent.name == "shut":
            raise PermissionError(13, "Permission denied", str(path))
        return is_dir(path)

    def refusing_lstat(path, *args, **kwargs):
        if Path(path).parent.name == "shut":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", refusing_scandir)
    monkeypatch.setattr(pathlib.Path, "is_file", refusing_is_file)
    monkeypatch.setattr(pathlib.Path, "is_dir", refusing_is_dir)
    found = [path.relative_to(tmp_path).as_posix() for path in find_images([tmp_path])]
    assert found == ["locked", "ok/a.png", "ok/broken.png", "ok/loop.png", "shut/c.png"]
    assert find_images([tmp_path / "shut" / "c.png"]) == [tmp_path / "shut" / "c.png"]  # named: kept, not raised
    monkeypatch.setattr(os, "lstat", refusing_lstat)
    assert path_is_there(tmp_path / "shut" / "c.png") and not path_is_there(tmp_path / "ok" / "absent.png")
    assert not path_is_there(tmp_path / "ok" / "a.png" / "below_a_file.png")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a user, not root
    with pytest.raises(ImageDecodeError, match="locked: a folder that cannot be opened \\(permission denied\\)"):
        check_regular_file(tmp_path / "locked")


def test_an_empty_input_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    from keras_covidcxr import InputError

    _touch(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    assert find_images(["."]) == [Path("a.png")]
    for empty in ("", ["a.png", ""]):
        with pytest.raises(InputError, match="an input path is empty"):
            find_images(empty)
