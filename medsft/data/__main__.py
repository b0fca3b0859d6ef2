"""``python -m medsft.data preview <recipe.yaml> [overrides]``: the older spelling of ``python -m medsft.preview``."""

from __future__ import annotations

import sys

from medsft.core.errors import run_cli

USAGE = "usage: python -m medsft.preview <recipe.yaml> [--flag value ...]"


def cli() -> None:
    if len(sys.argv) < 2 or sys.argv[1] != "preview":
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    from medsft import preview

    run_cli(lambda: preview.main(sys.argv[2:]), "medsft.preview")


if __name__ == "__main__":
    cli()
