"""``medsft-data`` (``python -m medsft.data``): the data commands.

```bash
medsft-data preview recipes/pubmedqa_lora.yaml --dataset_name ../shared/data/pubmedqa \\
    --model_name_or_path ../shared/models/gpt2-tokenizer       # the same as medsft-preview / python -m medsft.preview
medsft-data pubmedqa-index ../shared/data/pubmedqa            # rebuild the shipped PubMedQA test-set index
```
"""

from __future__ import annotations

import sys

from medsft.core.errors import MedsftError, disk_full_errors, run_cli

USAGE = """usage: medsft-data COMMAND [arguments]

commands:
  preview RECIPE.yaml [--flag value ...]   the training data exactly as the model will see it (medsft-preview)
  pubmedqa-index PUBMEDQA_DIR [OUT_DIR]    rebuild the PubMedQA test-set index decontamination ships with (in
                                           place, or into OUT_DIR: a new folder or one without the index's files)
"""


def _pubmedqa_index(argv: list[str]) -> None:
    from pathlib import Path

    from medsft.data import pubmedqa
    from medsft.data.decontam import INDEX_FILES, SHIPPED, TestSetIndex
    from medsft.data.io import check_writable_dir

    if not argv or len(argv) > 2:
        raise MedsftError("pubmedqa-index needs PUBMEDQA_DIR (the release with ori_pqal.json) and optionally OUT_DIR")
    out = Path(argv[1]) if len(argv) > 1 else SHIPPED
    # Only the shipped index is rebuilt in place; another folder's files (e.g. the release's own
    # test_ground_truth.json, when OUT_DIR is PUBMEDQA_DIR) are the user's and are not overwritten.
    in_place = out.resolve() == SHIPPED.resolve()
    if not in_place:
        if out.exists() and not out.is_dir():
            raise MedsftError(f"OUT_DIR {out} is a file; pass a folder (new or without the index's files)")
        there = [name for name in INDEX_FILES if (out / name).exists()]
        if there:
            raise MedsftError(
                f"OUT_DIR {out} already has {', '.join(there)}; pubmedqa-index does not overwrite files it did not "
                "just write: pass a new or empty folder, or delete them first"
            )
    check_writable_dir(out, "OUT_DIR")
    index = TestSetIndex.from_pubmedqa(argv[0])
    again = "run the same command again" + (
        "" if in_place else f" into a new folder (or once the files it wrote in {out} are deleted)"
    )
    with disk_full_errors(out, again):
        index.save(out, pubmedqa.official_test_labels(argv[0]))
    print(f"{len(index.pmids)} PMIDs, {len(index.questions)} questions, {len(index.ngrams)} 13-grams")


def cli() -> None:
    command, argv = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else (None, [])
    if command in (None, "-h", "--help"):
        print(USAGE, file=sys.stdout if command else sys.stderr, end="")
        sys.exit(0 if command else 2)
    if command == "preview":
        from medsft import preview

        run_cli(lambda: preview.main(argv), "medsft.preview")
    elif command == "pubmedqa-index":
        run_cli(lambda: _pubmedqa_index(argv), "medsft-data")
    else:
        print(f"medsft-data: error: unknown command {command!r}; commands: preview, pubmedqa-index", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
