"""medsft.data.medquad on the real ../shared XML files: counts (computed here by regex, independently of the
loader), the split by focus, top-k focus, bad files counted, formats.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from medsft.data import medquad
from tests.conftest import MEDQUAD_DIR


def _count_medquad_independently(files) -> tuple[int, int, int, Counter]:
    """Regex over the raw XML (no ElementTree): pairs, empty answers, exact duplicates, kept pairs per focus.

    Both schemas of the release: <Document>/<Focus>/<QAPair>/<Question>/<Answer> and, in a few NINDS files,
    <doc>/<doctitle-focus>/<pair>/<question>/<answer>."""
    pairs = empty = dup = 0
    seen, per_focus = set(), Counter()
    for file in files:
        text = file.read_text(encoding="utf-8")
        focus = re.search(r"<(?:Focus|doctitle-focus)>(.*?)</(?:Focus|doctitle-focus)>", text, re.S)
        focus = " ".join(focus.group(1).split())
        for block in re.findall(r"<(?:QAPair|pair)\b[^>]*>(.*?)</(?:QAPair|pair)>", text, re.S):
            pairs += 1
            question = re.search(r"<[Qq]uestion[^>]*>(.*?)</[Qq]uestion>", block, re.S).group(1)
            question = " ".join(question.split())
            answer = re.search(r"<[Aa]nswer>(.*?)</[Aa]nswer>", block, re.S)
            answer = " ".join(answer.group(1).split()) if answer else ""
            if not answer:
                empty += 1
            elif (question.replace(" ?", "?"), answer) in seen:
                dup += 1
            else:
                seen.add((question.replace(" ?", "?"), answer))
                per_focus[focus] += 1
    return pairs, empty, dup, per_focus


@pytest.fixture(scope="module")
def medquad_counts():
    return _count_medquad_independently(sorted(MEDQUAD_DIR.rglob("*.xml")))


@pytest.fixture(scope="module")
def medquad_loaded():
    return medquad.load_medquad(str(MEDQUAD_DIR))


def test_medquad_counts(medquad_counts, medquad_loaded):
    pairs, empty, dup, per_focus = medquad_counts
    splits, report = medquad_loaded
    assert report.read == pairs
    assert report.dropped == Counter({"empty answer": empty, "exact duplicate": dup})
    assert report.kept == pairs - empty - dup == len(splits["train"]) + len(splits["validation"])
    # the collection the publisher emptied contributes nothing
    herbs = sorted((MEDQUAD_DIR / "12_MPlusHerbsSupplements_QA").glob("*.xml"))
    assert _count_medquad_independently(herbs)[1] == _count_medquad_independently(herbs)[0] > 0
    assert "12_MPlusHerbsSupplements_QA" not in set(splits["train"]["collection"])
    # the release has a few documents with an empty <QAPairs/>: reported, not silently passed over
    empty_docs = {
        str(f.relative_to(MEDQUAD_DIR))
        for f in MEDQUAD_DIR.rglob("*.xml")
        if not re.search(r"<(?:QAPair|pair)\b", f.read_text(encoding="utf-8"))
    }
    assert set(report.skipped_files) == empty_docs and len(empty_docs) > 0
    assert set(report.skipped_files.values()) == {"no question-answer pairs"}


def test_medquad_split_is_by_focus(medquad_loaded):
    splits, _ = medquad_loaded
    train = {f.lower() for f in splits["train"]["focus"]}
    validation = {f.lower() for f in splits["validation"]["focus"]}
    assert not train & validation
    n = len(splits["train"]) + len(splits["validation"])
    assert 0.05 * n <= len(splits["validation"]) < 0.07 * n


def test_medquad_top_k_focus(medquad_counts):
    per_focus = medquad_counts[3]
    top = sorted(per_focus.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    splits, report = medquad.load_medquad(str(MEDQUAD_DIR), validation_size=0.0, top_k_focus=20)
    assert len(splits["train"]) == sum(n for _, n in top)
    assert set(splits["train"]["focus"]) == {f for f, _ in top}
    assert report.dropped["focus outside top 20"] == sum(per_focus.values()) - sum(n for _, n in top)


def test_medquad_bad_xml_file_is_skipped_and_counted(tmp_path):
    files = sorted((MEDQUAD_DIR / "1_CancerGov_QA").glob("*.xml"))[:2]
    collection = tmp_path / "1_CancerGov_QA"
    collection.mkdir()
    for f in files:
        (collection / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (collection / "broken.xml").write_text("<Document><Focus>x</Focus><QAPairs><QAPair>")
    splits, report = medquad.load_medquad(str(tmp_path), validation_size=0.0)
    assert list(report.skipped_files) == ["1_CancerGov_QA/broken.xml"]
    assert report.skipped_files["1_CancerGov_QA/broken.xml"].startswith("invalid XML")
    assert report.read == _count_medquad_independently(files)[0] == len(splits["train"]) + sum(report.dropped.values())
    assert "1 file(s) gave no rows (unreadable or empty)" in report.summary()


def test_medquad_special_token_format():
    row = {"question": "What is X?", "answer": "X is Y."}
    out = medquad.to_special_tokens(row)
    assert out["prompt"] + out["completion"] == "<question> What is X?<answer> X is Y.<end>"


def test_medquad_file_with_another_root_is_read(tmp_path):
    """CDC-style files wrap the <Document> structure in another root (<DiseaseFile>): their pairs are read; a file
    with no question-answer structure at all is still reported."""
    collection = tmp_path / "2_CDC_QA"
    collection.mkdir()
    (collection / "wrapped.xml").write_text(
        '<DiseaseFile><Document id="c1" source="CDC" url="https://www.cdc.gov/x"><Focus>Measles</Focus><QAPairs>'
        '<QAPair pid="1"><Question qid="1" qtype="information">What is measles ?</Question>'
        "<Answer>A viral disease.</Answer></QAPair></QAPairs></Document></DiseaseFile>"
    )
    (collection / "other.xml").write_text("<Catalog><Item>no pairs here</Item></Catalog>")
    splits, report = medquad.load_medquad(str(tmp_path), validation_size=0.0)
    (row,) = splits["train"]
    assert (row["focus"], row["question"], row["source"], row["document_id"]) == (
        "Measles", "What is measles?", "CDC", "c1",
    )  # fmt: skip
    assert list(report.skipped_files) == ["2_CDC_QA/other.xml"]
    assert "no question-answer pairs" in report.skipped_files["2_CDC_QA/other.xml"]
