"""``python -m medsft.data preview <recipe.yaml> [overrides]`` (see ``medsft.data.preview``)."""

from __future__ import annotations

import sys

from medsft.core.errors import run_cli

USAGE = "usage: python -m medsft.data preview <recipe.yaml> [--flag value ...]"


def cli() -> None:
    if len(sys.argv) < 2 or sys.argv[1] != "preview":
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    from medsft import preview

    run_cli(lambda: preview.main(sys.argv[2:]), "medsft.data preview")


if __name__ == "__main__":
    cli()
