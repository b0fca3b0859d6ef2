"""medsft.data.__main__ (``medsft-data``): rebuilding the shipped PubMedQA test-set index; what it will not touch."""

from __future__ import annotations

import shutil
import sys

import pytest

from medsft.data import __main__ as data_cli
from medsft.data.decontam import INDEX_FILES, SHIPPED
from tests.conftest import PUBMEDQA_DIR


def _run(monkeypatch, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["medsft-data", *argv])
    try:
        data_cli.cli()
    except SystemExit as e:
        return e.code
    return 0


def test_pubmedqa_index_rebuilds_the_shipped_index(tmp_path, monkeypatch, capsys):
    out = tmp_path / "index"
    assert _run(monkeypatch, "pubmedqa-index", str(PUBMEDQA_DIR), str(out)) == 0
    assert "500 PMIDs" in capsys.readouterr().out
    for name in INDEX_FILES:  # the release in ../shared gives exactly the files medsft ships
        assert (out / name).read_bytes() == (SHIPPED / name).read_bytes(), name


@pytest.mark.parametrize("into", ["release", "file"])
def test_pubmedqa_index_does_not_overwrite_a_users_files(tmp_path, monkeypatch, capsys, into):
    release = tmp_path / "pubmedqa"
    release.mkdir()
    for path in PUBMEDQA_DIR.iterdir():  # writable copies (../shared is read-only), so only medsft can refuse
        shutil.copyfile(path, release / path.name)
    # the release itself as OUT_DIR would rewrite its own test_ground_truth.json; a file cannot be a folder
    out = release if into == "release" else release / "ori_pqal.json"
    before = {p.name: p.read_bytes() for p in release.iterdir() if p.is_file()}
    assert _run(monkeypatch, "pubmedqa-index", str(release), str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err
    assert ("test_ground_truth.json" in err) if into == "release" else ("is a file" in err)
    assert {p.name: p.read_bytes() for p in release.iterdir() if p.is_file()} == before


def test_pubmedqa_index_on_a_full_disk_is_one_line_and_leaves_no_half_written_file(tmp_path, monkeypatch, capsys):
    from tests.conftest import small_disk

    with small_disk(tmp_path / "small", "400k") as disk:  # the labels and questions fit, the 800 KB of 13-grams not
        assert _run(monkeypatch, "pubmedqa-index", str(PUBMEDQA_DIR), str(disk / "index")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"writing to {disk / 'index'} failed: No space left on device" in err
        assert "into a new folder (or once the files it wrote in" in err
        written = {p.name: p.read_bytes() for p in (disk / "index").iterdir()}
    assert written and not [name for name in written if name.endswith(".tmp")]
    for name, data in written.items():  # what is there is whole
        assert data == (SHIPPED / name).read_bytes(), name

    assert _run(monkeypatch, "pubmedqa-index", str(PUBMEDQA_DIR), "/proc/medsft-index") == 2
    assert "OUT_DIR /proc/medsft-index cannot be written" in capsys.readouterr().err
