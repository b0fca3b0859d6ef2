"""medsft.data.clinical_notes: seeded, self-consistent synthetic notes in every format."""

from __future__ import annotations

import re

import pytest

from medsft.core.errors import MedsftError
from medsft.data import clinical_notes


def test_clinical_notes_are_seeded_and_consistent():
    a, b = clinical_notes.generate_notes(300, seed=7), clinical_notes.generate_notes(300, seed=7)
    assert a == b
    assert clinical_notes.generate_notes(50, seed=7) == a[:50]
    assert clinical_notes.generate_notes(300, seed=8) != a
    by_name = {c.name: c for c in clinical_notes.CONDITIONS}
    assert len({n["condition"] for n in a}) == len(by_name)  # every condition is used
    assert len({n["text"] for n in a}) == len(a)  # varied
    for note in a:
        condition = by_name[note["condition"]]
        assert note["text"] == f"{note['stem']} {note['continuation']}"
        assert note["stem"].startswith("Patient presents with ")
        stated = note["stem"][len("Patient presents with ") : note["stem"].rindex(" for ")]
        residue = stated
        for symptom in sorted(condition.symptoms, key=len, reverse=True):  # only this condition's symptoms
            residue = residue.replace(symptom, "")
        assert re.fullmatch(r"(, | and )+", residue), note["stem"]
        assert f"Assessment: {condition.name}." in note["continuation"]
        age = int(re.search(r"(\d+)-year-old", note["continuation"]).group(1))
        assert condition.ages[0] <= age <= condition.ages[1]
        temperature = float(re.search(r"Temperature ([\d.]+) °C", note["continuation"]).group(1))
        assert (temperature >= 38.0) == condition.febrile
        if note["condition"] == "urinary tract infection":
            assert "-year-old female" in note["continuation"] or "-year-old girl" in note["continuation"]


def test_clinical_notes_formats():
    (note,) = clinical_notes.generate_notes(1, seed=0)
    inst = clinical_notes.to_instruction(note)
    assert inst["prompt"] + inst["completion"] == note["text"]
    assert clinical_notes.to_text(note) == {"text": note["text"]}
    with pytest.raises(MedsftError, match="num_notes must be positive"):
        clinical_notes.generate_notes(0)
