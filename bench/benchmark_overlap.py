"""How much of each shipped training dataset overlaps the benchmarks medsft evaluates: PubMedQA's official test set,
MedQA's test questions and MMLU's six medical test splits (exact question match or a shared 13-word sequence, as
training's decontamination checks it).

```bash
python bench/benchmark_overlap.py --pubmedqa ../shared/data/pubmedqa --medqa ../shared/data/medqa \\
    --mmlu ../shared/data/mmlu --wikidoc ../shared/data/wikidoc_patient_information --medquad ../shared/data/medquad
```

Prints a table (training dataset × benchmark) and writes ``bench/results/benchmark_overlap.json``. The counts are
of the loaders' rows (train and validation) before any policy is applied, as training's check sees them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from datasets import concatenate_datasets
    from rich.console import Console
    from rich.table import Table

    from medsft.data import decontam
    from medsft.data.registry import SPECS, DatasetOptions

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("pubmedqa", "medqa", "mmlu", "medmcqa", "wikidoc", "medquad"):
        parser.add_argument(f"--{name}", help=f"local {name} release (or Hub id)")
    parser.add_argument("--out", default="bench/results/benchmark_overlap.json")
    args = parser.parse_args()

    indexes = {"PubMedQA test": decontam.TestSetIndex.from_pubmedqa(args.pubmedqa or "qiaojin/PubMedQA")}
    for name in ("medqa", "mmlu", "medmcqa"):
        if getattr(args, name):
            indexes[name] = decontam.benchmark_index(name, getattr(args, name))
    datasets = {
        "pubmedqa (PQA-L, non-test)": (args.pubmedqa, "pubmedqa", {"pubmedqa_reference": args.pubmedqa}),
        "pubmed_abstracts": (args.pubmedqa, "pubmed_abstracts", {"pubmedqa_reference": args.pubmedqa}),
        "wikidoc": (args.wikidoc, "wikidoc", {}),
        "medquad": (args.medquad, "medquad", {}),
        "clinical_notes": ("synthetic-clinical-notes", "clinical_notes", {}),
    }
    result = {}
    table = Table(title="training rows overlapping each benchmark (question match or 13-gram)")
    table.add_column("training dataset")
    table.add_column("rows", justify="right")
    for name in indexes:
        table.add_column(name, justify="right")
    for label, (path, kind, options) in datasets.items():
        if not path:
            continue
        splits, _ = SPECS[kind].load(path, DatasetOptions(**options))  # the rows decontamination checks
        rows = concatenate_datasets(list(splits.values()))
        found = decontam.find_overlaps(rows, indexes)
        result[label] = {"rows": len(rows), **{n: len(o.rows) for n, o in found.items()}}
        table.add_row(label, str(len(rows)), *(str(len(found[n].rows)) for n in indexes))
    Console().print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
