"""Score a ``{PMID: label}`` predictions file the way PubMedQA's official ``evaluation.py`` does.

```bash
python -m medsft.score_pubmedqa runs/x/eval/pubmedqa_predictions_x.json \\
    --ground_truth ../shared/data/pubmedqa/test_ground_truth.json
```

Prints accuracy and macro-F1 as the official script does; a file that does not predict all and only the 500 test
PMIDs gets one line naming what is missing or extra (see ``medsft.evaluation.official``).
"""

from __future__ import annotations

import argparse

from medsft.core.errors import run_cli
from medsft.evaluation.official import score_predictions


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="medsft.score_pubmedqa", description=__doc__.split("\n")[0])
    parser.add_argument("predictions", help="JSON file {PMID: 'yes'|'no'|'maybe'}")
    parser.add_argument("--ground_truth", required=True, help="PubMedQA's test_ground_truth.json")
    args = parser.parse_args(argv)

    result = score_predictions(args.predictions, args.ground_truth)
    print(f"Accuracy {result['accuracy']:f}")
    print(f"Macro-F1 {result['macro_f1']:f}")
    return result


def cli() -> None:
    run_cli(main, "medsft.score_pubmedqa")


if __name__ == "__main__":
    cli()
