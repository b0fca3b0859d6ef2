"""PubMed abstracts as plain text for continued pre-training (causal-LM loss on every token, packed; ``text``, or
``instruction`` with an empty prompt to mix with instruction-format datasets).

Sources (a file or a directory of them):
    - JSON list / JSONL of records with the text in ``abstract``, ``text`` or ``AbstractText`` and the PMID (when
      known) in ``pmid``, ``PMID``, ``pubid`` or ``id``; ``title`` is prepended when present.
    - ``.txt``: one abstract per paragraph (paragraphs separated by a blank line), no PMIDs.
    - The PubMedQA release (``ori_pqal.json`` or its directory): its 1,000 abstracts, each the sections plus the
      conclusion (the long answer). This is the offline stand-in for a PubMed corpus.
    - Any other name: a Hub dataset with the fields above (``train`` split).

Abstracts whose PMID is in the PubMedQA official test set are always removed and counted: training on them would
inflate every PubMedQA number afterwards; so are those of PubMedQA's 50 validation questions (default split), which
model selection reads (a mixture that splits PubMedQA otherwise is refused). Texts without PMIDs are checked by
n-gram overlap (``medsft.data.decontam``).
"""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict

from medsft.core.errors import MedsftError, hub_errors
from medsft.data import pubmedqa
from medsft.data.io import read_records
from medsft.data.load_report import LoadReport
from medsft.data.splits import random_split

TEXT_FIELDS = ("abstract", "text", "AbstractText")
PMID_FIELDS = ("pmid", "PMID", "pubid", "id")
SPLIT_SEED = 42
VALIDATION_SIZE = 0.05
LICENSE = "other"  # PubMed abstracts carry their publishers' terms; PubMedQA's copy is MIT


def _is_pubmedqa(path: Path) -> bool:
    if not path.exists():
        return False
    if path.is_dir():
        return (path / pubmedqa.DATA_FILE).is_file()
    if path.suffix != ".json":
        return False
    with path.open(encoding="utf-8") as f:
        return f.read(1).lstrip()[:1] == "{"  # the official PubMedQA file is an object keyed by PMID


def _from_record(record: dict, where: str) -> dict:
    text_field = next((f for f in TEXT_FIELDS if f in record), None)
    if text_field is None:
        raise MedsftError(f"{where}: no abstract text field (expected one of {', '.join(TEXT_FIELDS)})")
    text = record[text_field]
    if isinstance(text, list):
        text = "\n".join(str(t) for t in text)
    if record.get("title"):
        text = f"{record['title']}\n{text}"
    pmid = next((str(record[f]) for f in PMID_FIELDS if record.get(f) is not None), "")
    return {"pmid": pmid, "text": str(text).strip()}


def read_abstracts(source: str) -> list[dict]:
    """``[{pmid, text}]`` from any of the supported sources (``pmid`` is ``""`` when unknown)."""
    path = Path(source).expanduser()
    if _is_pubmedqa(path) or source == pubmedqa.HUB_ID:
        return [
            {"pmid": q["pmid"], "text": "\n".join([*q["contexts"], q["long_answer"]]).strip()}
            for q in pubmedqa.read_questions(source)
        ]
    if not path.exists():
        from datasets import load_dataset

        with hub_errors("dataset", source):
            hub = load_dataset(source, split="train")
        return [_from_record(r, f"{source} row {i}") for i, r in enumerate(hub)]
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl", ".txt"))
    if not files:
        raise MedsftError(f"no .json, .jsonl or .txt files under {source}")
    rows = []
    for file in files:
        if file.suffix == ".txt":
            paragraphs = file.read_text(encoding="utf-8").split("\n\n")
            rows.extend({"pmid": "", "text": p.strip()} for p in paragraphs if p.strip())
        elif file.suffix == ".json" and _is_pubmedqa(file):
            rows.extend(read_abstracts(str(file)))
        else:
            rows.extend(_from_record(r, f"{file}, record {i}") for i, r in enumerate(read_records(file)))
    return rows


def load_pubmed_abstracts(
    source: str,
    exclude_pmids: set[str],
    validation_size: float = VALIDATION_SIZE,
    held_out_pmids: set[str] = frozenset(),
) -> tuple[DatasetDict, LoadReport]:
    """Load abstracts, drop empty texts, exact duplicates, every PMID in ``exclude_pmids`` (the PubMedQA test set)
    and in ``held_out_pmids`` (PubMedQA's validation questions: their conclusions are the rationale-format answers
    model selection scores), each counted, and split.

    Returns:
        ``DatasetDict`` with ``train`` (and ``validation``) of ``{pmid, text}`` rows, and the report.
    """
    rows = read_abstracts(source)
    report = LoadReport(source=Path(source).name if Path(source).exists() else source, read=len(rows))
    kept, seen = [], set()
    for row in rows:
        if not row["text"]:
            report.dropped["empty text"] += 1
        elif row["pmid"] and row["pmid"] in exclude_pmids:
            report.dropped["PubMedQA test PMID"] += 1
        elif row["pmid"] and row["pmid"] in held_out_pmids:
            report.dropped["PubMedQA validation PMID (held out for model selection)"] += 1
        elif row["text"] in seen:
            report.dropped["exact duplicate"] += 1
        else:
            seen.add(row["text"])
            kept.append(row)
    if not kept:
        raise MedsftError(f"{source}: no abstracts left ({report.summary()})")
    return random_split(kept, validation_size, SPLIT_SEED, report), report


def to_text(row: dict) -> dict:
    return {"text": row["text"]}


def to_instruction(row: dict) -> dict:
    """The same loss on every token, in the prompt/completion shape (an empty prompt), so that abstracts mix with
    instruction-format datasets (a mixture's datasets share one shape), e.g. PubMedQA's rationale format."""
    return {"prompt": "", "completion": row["text"]}


FORMATTERS = {"text": to_text, "instruction": to_instruction}
