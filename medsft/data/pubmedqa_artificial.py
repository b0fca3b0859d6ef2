"""PubMedQA PQA-A: the 211,269 automatically labelled questions (yes/no), for pre-fine-tuning before PQA-L.

The PubMedQA paper's best model (BioBERT, 68.1% on the official test set) was fine-tuned on PQA-A first and only then
on the 450 expert-labelled PQA-L training questions. PQA-A was generated from other articles than PQA-L (a title
phrased as a question, its conclusion's negation the label), so its answers are "yes" or "no", never "maybe".

Splits: seeded random ``train``/``validation`` (0.5% held out: about 1,056 questions). PQA-A has no test set; its
PMIDs are disjoint from PQA-L's by construction, and decontamination still checks every row against the official
PQA-L test set (default policy ``drop``: a row that overlaps it is removed and counted, not fatal, in 211k rows).

Formats: PQA-L's (``chat``, ``instruction``, ``text``; ``pubmedqa_long_answer`` applies), so a model pre-fine-tuned
here continues on PQA-L in the same format.

Sources:
    Hub: ``qiaojin/PubMedQA`` config ``pqa_artificial`` (with ``--dataset_type pubmedqa_artificial``: the same Hub id
    is PQA-L by default). Offline: the official release's ``ori_pqaa.json`` (PQA-L's layout:
    ``{PMID: {QUESTION, CONTEXTS, LABELS, MESHES, final_decision, LONG_ANSWER}}``) or a directory holding it (a
    directory holding ``ori_pqal.json`` too is read as PQA-L unless the type is given). Licence: MIT.
"""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict

from medsft.data import pubmedqa
from medsft.data.load_report import LoadReport
from medsft.data.splits import random_split

HUB_CONFIG = "pqa_artificial"
DATA_FILE = "ori_pqaa.json"
LICENSE = pubmedqa.LICENSE
VALIDATION_SIZE = 0.005
SPLIT_SEED = 42
FORMATTERS = pubmedqa.FORMATTERS


def load_pubmedqa_artificial(
    source: str = pubmedqa.HUB_ID, validation_size: float = VALIDATION_SIZE
) -> tuple[DatasetDict, LoadReport]:
    """Read PQA-A and split it into ``train`` and (when ``validation_size > 0``) ``validation``; rows as PQA-L's."""
    rows = pubmedqa.read_questions(source, DATA_FILE, HUB_CONFIG)
    report = LoadReport(source=Path(source).name if Path(source).exists() else source, read=len(rows))
    # sorted by PMID: the split does not depend on the order the source lists the questions in
    rows.sort(key=lambda r: (len(r["pmid"]), r["pmid"]))
    return random_split(rows, validation_size, SPLIT_SEED, report), report
