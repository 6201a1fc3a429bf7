"""Atomic outputs end with the user's umask mode (shareable), never the private temporary's 0600/0700."""

import os
import stat
from pathlib import Path

import pytest

from keras_covidcxr.io import atomic
from keras_covidcxr.io.atomic import atomic_directory, atomic_write

# umask -> (file mode, folder mode) that plain open()/mkdir() give
MODES = {0o022: (0o644, 0o755), 0o027: (0o640, 0o750), 0o077: (0o600, 0o700)}


@pytest.fixture(params=sorted(MODES), ids=lambda mask: f"umask{mask:03o}")
def umask(request, set_umask):
    """Run the test under each umask of MODES."""
    set_umask(request.param)
    return request.param


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing_it(umask, monkeypatch):
    assert atomic.current_umask() == umask
    assert atomic.current_umask() == umask

    def no_proc(*args, **kwargs):  # as on macOS: no /proc/self/status
        raise OSError("no /proc")

    monkeypatch.setattr(atomic, "open", no_proc, raising=False)
    assert atomic.current_umask() == umask
    assert atomic.current_umask() == umask


def test_a_written_file_gets_the_umask_mode_and_its_temporary_stays_private(umask, tmp_path):
    target = tmp_path / "results.csv"
    with atomic_write(target, "w") as handle:
        handle.write("path,label\n")
        (temporary,) = tmp_path.glob(".results.csv.*.tmp")
        assert mode(temporary) == 0o600
    assert mode(target) == MODES[umask][0]
    with atomic_write(target, "w") as handle:  # replacing keeps it shareable
        handle.write("path,label\n")
    assert mode(target) == MODES[umask][0]


def test_a_folder_and_everything_inside_get_the_umask_modes(umask, tmp_path):
    target = tmp_path / "report"
    for _ in range(2):  # created, then replaced
        with atomic_directory(target, replace_if=lambda path: True) as folder:
            assert mode(folder) == 0o700
            (folder / "member" / "deeper").mkdir(parents=True)
            with atomic_write(folder / "member" / "weights.bin") as handle:
                handle.write(b"\0")
            (folder / "member" / "deeper" / "config.json").write_text("{}")
            # as safetensors' save_file leaves its file: private, from its own temporary
            os.close(os.open(folder / "member" / "model.safetensors", os.O_CREAT | os.O_WRONLY, 0o600))
            with atomic_write(folder / "report.md", "w") as handle:
                handle.write("done")
        file_mode, folder_mode = MODES[umask]
        assert mode(target) == folder_mode
        inside = sorted(path.relative_to(target).as_posix() for path in target.rglob("*"))
        assert inside == [
            "member",
            "member/deeper",
            "member/deeper/config.json",
            "member/model.safetensors",
            "member/weights.bin",
            "report.md",
        ]
        for path in target.rglob("*"):
            assert mode(path) == (folder_mode if path.is_dir() else file_mode), path
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report"]  # no temporary left behind


def test_a_long_name_that_fits_the_file_system_is_written_and_a_symlink_keeps_pointing_at_it(tmp_path):
    long_name = tmp_path / ("r" * 246 + ".csv")  # 250 bytes: fits; ".<name>.<random>.tmp" beside it would not
    with atomic_write(long_name, "w") as handle:
        handle.write("rows\n")
    assert long_name.read_text() == "rows\n" and [p.name for p in tmp_path.iterdir()] == [long_name.name]
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(Path("store") / "real.csv")
    with atomic_write(link, "w") as handle:
        handle.write("new\n")
    assert link.is_symlink() and target.read_text() == "new\n"  # written through the link, as open() would
