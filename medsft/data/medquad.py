"""MedQuAD (NIH medical question-answer pairs): XML loader, cleaning, per-focus split and formatting.

The official release is a directory tree of XML files, one ``<Document id source url>`` per focus topic::

    <Document id="..." source="GARD" url="..."><Focus>Diabetes</Focus>
      <QAPairs><QAPair pid="1"><Question qid="..." qtype="symptoms">...</Question><Answer>...</Answer></QAPair>...

Three MedlinePlus collections were published with their answers removed (copyright): those rows are dropped and
counted, as are exact (question, answer) duplicates and, optionally, foci outside the ``top_k_focus`` largest. A file
that is not valid XML is skipped and reported; it does not sink the corpus.

The validation split is made **by focus**, so that no focus topic appears in both train and validation (questions
about one focus share most of their wording; a random row split would leak).

Hub: ``keivalya/MedQuad-MedicalQnADataset`` (a CSV flattening with ``qtype``, ``Question``, ``Answer`` and no focus
column). Offline: the official directory (or one XML file). Licence: CC BY 4.0.
"""

from __future__ import annotations

import logging
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from datasets import Dataset, DatasetDict

from medsft.core.errors import MedsftError, hub_errors
from medsft.data.load_report import LoadReport

logger = logging.getLogger(__name__)

HUB_ID = "keivalya/MedQuad-MedicalQnADataset"
LICENSE = "cc-by-4.0"
SPLIT_SEED = 42
VALIDATION_SIZE = 0.05
# The seed notebook's special-token format. Training adds them to the tokenizer and trains their embedding rows.
SPECIAL_TOKENS = ("<question>", "<answer>", "<end>")
SYSTEM_PROMPT = "You are a medical information assistant. Answer the question accurately and clearly."


def clean_question(text: str) -> str:
    """One line, single spaces, and no space before the final '?' (MedQuAD writes 'What is X ?')."""
    return re.sub(r"\s+([?.!,])", r"\1", " ".join(text.split()))


def clean_answer(text: str) -> str:
    """Trimmed lines, single spaces inside lines, at most one blank line in a row (lists keep their line breaks)."""
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# Tag and attribute names of the two schemas in the release: most files use <Document>; a few NINDS files use an
# older lower-case <doc> schema (docid/corpus attributes, <doctitle-focus>, <qaPairs><pair><question><answer>).
SCHEMAS = {
    "Document": {"id": "id", "source": "source", "focus": "Focus", "pair": "QAPair", "q": "Question", "a": "Answer"},
    "doc": {
        "id": "docid",
        "source": "corpus",
        "focus": "doctitle-focus",
        "pair": "pair",
        "q": "question",
        "a": "answer",
    },
}


def parse_document(path: Path, collection: str) -> list[dict]:
    """The question-answer pairs of one MedQuAD XML file.

    The schema is recognised by the question-answer structure, whatever the root element is called (the release also
    has e.g. CDC files with a ``<DiseaseFile>`` root around the ``<Document>`` structure).

    Raises:
        ``ET.ParseError`` for invalid XML, ``ValueError`` for a file with neither schema's question-answer structure.
    """
    root = ET.parse(path).getroot()
    tags = SCHEMAS.get(root.tag)
    if tags is None:
        tags = next((t for t in SCHEMAS.values() if root.find(f".//{t['pair']}/{t['q']}") is not None), None)
        if tags is None:
            raise ValueError(f"no question-answer pairs in either MedQuAD schema (root element <{root.tag}>)")
        # the focus and document attributes sit on the element that holds the pairs' container, or on the root
        holder = next((e for e in root.iter() if e.find(tags["focus"]) is not None), root)
        if holder is not root:
            holder.attrib = {**root.attrib, **holder.attrib}
            root = holder
    focus = " ".join((root.findtext(tags["focus"]) or "").split())
    rows = []
    for pair in root.iter(tags["pair"]):
        question = pair.find(tags["q"])
        rows.append(
            {
                "focus": focus,
                "qtype": question.get("qtype", "") if question is not None else "",
                "question": clean_question(question.text or "") if question is not None else "",
                "answer": clean_answer(pair.findtext(tags["a"]) or ""),
                "source": root.get(tags["source"], ""),
                "url": root.get("url", ""),
                "collection": collection,
                "document_id": root.get(tags["id"], ""),
            }
        )
    return rows


def _read_xml_tree(path: Path, report: LoadReport) -> list[dict]:
    files = [path] if path.is_file() else sorted(path.rglob("*.xml"))
    if not files:
        raise MedsftError(f"no .xml files under MedQuAD directory {path}")
    rows = []
    for file in files:
        collection = file.parent.name if file.parent != path else ""
        name = str(file.relative_to(path) if file != path else file.name)
        try:
            pairs = parse_document(file, collection)
        except ET.ParseError as e:
            report.skipped_files[name] = f"invalid XML ({e})"
            continue
        except ValueError as e:
            report.skipped_files[name] = str(e)
            continue
        if not pairs:
            report.skipped_files[name] = "no question-answer pairs"
        rows.extend(pairs)
    if report.skipped_files:
        logger.warning(
            "MedQuAD: %d XML file(s) gave no rows (unreadable or empty): %s",
            len(report.skipped_files),
            report.skipped_files,
        )
    return rows


def _read_hub(source: str) -> list[dict]:
    from datasets import load_dataset

    with hub_errors("dataset", source):
        hub = load_dataset(source, split="train")
    logger.warning(
        "%s has no focus column: the validation split is made per question, so questions about one focus may fall "
        "on both sides; use the official XML release for a per-focus split",
        source,
    )
    return [
        {
            "focus": "",
            "qtype": r.get("qtype") or "",
            "question": clean_question(r.get("Question") or ""),
            "answer": clean_answer(r.get("Answer") or ""),
            "source": "",
            "url": "",
            "collection": "",
            "document_id": "",
        }
        for r in hub
    ]


def split_by_focus(rows: list[dict], validation_size: float, seed: int = SPLIT_SEED) -> tuple[list, list]:
    """Whole foci go to validation (shuffled, seeded) until it holds at least ``validation_size`` of the rows."""
    group = [r["focus"].lower() or r["question"].lower() for r in rows]
    sizes = Counter(group)
    foci = sorted(sizes)
    random.Random(seed).shuffle(foci)
    target, held, taken = validation_size * len(rows), set(), 0
    for focus in foci:
        if taken >= target:
            break
        held.add(focus)
        taken += sizes[focus]
    train = [r for r, g in zip(rows, group, strict=True) if g not in held]
    validation = [r for r, g in zip(rows, group, strict=True) if g in held]
    return train, validation


def load_medquad(
    source: str = HUB_ID, validation_size: float = VALIDATION_SIZE, top_k_focus: int | None = None
) -> tuple[DatasetDict, LoadReport]:
    """Load MedQuAD from the XML tree (or the Hub CSV), clean, filter and split it by focus.

    Dropped and counted: rows with an empty question or answer, exact (question, answer) duplicates (the first is
    kept), and with ``top_k_focus`` the rows whose focus is not among the k foci with most remaining rows.

    Returns:
        ``DatasetDict`` with ``train`` (and ``validation`` when ``validation_size > 0``), and the report.
    """
    path = Path(source).expanduser()
    report = LoadReport(source=path.name if path.exists() else source)
    rows = _read_xml_tree(path, report) if path.exists() else _read_hub(source)
    report.read = len(rows)
    kept, seen = [], set()
    for row in rows:
        if not row["question"]:
            report.dropped["empty question"] += 1
        elif not row["answer"]:
            report.dropped["empty answer"] += 1
        elif (row["question"], row["answer"]) in seen:
            report.dropped["exact duplicate"] += 1
        else:
            seen.add((row["question"], row["answer"]))
            kept.append(row)
    if top_k_focus is not None:
        sizes = Counter(r["focus"] for r in kept)
        top = {f for f, _ in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k_focus]}
        report.dropped[f"focus outside top {top_k_focus}"] += sum(r["focus"] not in top for r in kept)
        kept = [r for r in kept if r["focus"] in top]
    if not kept:
        raise MedsftError(f"{source}: no usable question-answer pairs ({report.summary()})")
    result = DatasetDict()
    if validation_size > 0:
        train, validation = split_by_focus(kept, validation_size)
        if not train:
            raise MedsftError(f"{source}: every focus went to validation; lower validation_size")
        result["train"], result["validation"] = Dataset.from_list(train), Dataset.from_list(validation)
    else:
        result["train"] = Dataset.from_list(kept)
    report.splits = {name: len(split) for name, split in result.items()}
    return result, report


def to_chat(row: dict) -> dict:
    return {
        "prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": row["question"]}],
        "completion": [{"role": "assistant", "content": row["answer"]}],
    }


def to_instruction(row: dict) -> dict:
    return {"prompt": f"### Question:\n{row['question']}\n\n### Answer:\n", "completion": row["answer"]}


def to_special_tokens(row: dict) -> dict:
    """The seed notebook's ``<question> … <answer> … <end>`` text; the tokens are added to the tokenizer."""
    question, answer, end = SPECIAL_TOKENS
    # No space before a special token: it would become a token of its own ("Ġ") in byte-level BPE.
    return {"prompt": f"{question} {row['question']}{answer}", "completion": f" {row['answer']}{end}"}


FORMATTERS = {"chat": to_chat, "instruction": to_instruction, "special_tokens": to_special_tokens}
