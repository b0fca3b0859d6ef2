"""The seeded random train/validation split shared by the loaders that need no special grouping."""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from medsft.core.errors import MedsftError
from medsft.data.load_report import LoadReport


def random_split(rows: list[dict], validation_size: float, seed: int, report: LoadReport) -> DatasetDict:
    """``train`` (and ``validation`` when ``validation_size > 0``), split with a fixed seed; sizes go to ``report``.

    The seed is each dataset's own constant, not the training seed, so every run and the evaluation hold out the
    same rows.
    """
    dataset = Dataset.from_list(rows)
    if validation_size > 0 and (len(rows) < 2 or round(len(rows) * (1 - validation_size)) < 1):
        raise MedsftError(
            f"{report.source}: {len(rows)} example(s) after cleaning ({report.summary()}): too few to hold out "
            f"validation_size={validation_size}; add data, or pass --validation_size 0"
        )
    if validation_size > 0:
        splits = dataset.train_test_split(test_size=validation_size, seed=seed)
        result = DatasetDict(train=splits["train"], validation=splits["test"])
    else:
        result = DatasetDict(train=dataset)
    report.splits = {name: len(split) for name, split in result.items()}
    return result
