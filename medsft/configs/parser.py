"""The recipe/CLI parser every command uses: TRL's ``TrlParser`` with one-line errors.

A recipe is a YAML file whose keys are the command's dataclass fields. It is given positionally (``medsft.train
recipes/x.yaml``) or with ``--config``; flags on the command line override the recipe.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence

import yaml
from trl import TrlParser

from medsft.core.errors import MedsftError


def _recipe_argv(argv: Sequence[str]) -> list[str]:
    """Accept the recipe path positionally: ``medsft.train recipes/x.yaml`` means ``--config recipes/x.yaml``."""
    argv = list(argv)
    if argv and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml")):
        argv = ["--config", argv[0], *argv[1:]]
    return argv


def load_recipe(path: str) -> dict:
    """Read a recipe YAML file into a mapping, with errors that name the file."""
    if not os.path.isfile(path):
        raise MedsftError(f"recipe file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            recipe = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise MedsftError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from e
    if recipe is None:
        recipe = {}
    if not isinstance(recipe, dict):
        raise MedsftError(f"{path}: a recipe must be a YAML mapping of argument names to values")
    return recipe


class _Parser(TrlParser):
    """TRL's parser with one-line errors: an abbreviation is refused (argparse would silently take ``--learning_rat``
    as ``--learning_rate``), and a bad value or unknown flag is a ``MedsftError`` naming it, not a usage dump."""

    def __init__(self, dataclass_types, prog: str | None = None):
        super().__init__(list(dataclass_types), prog=prog, allow_abbrev=False)

    def error(self, message: str):
        raise MedsftError(f"{message} (run with --help for the accepted arguments)")

    def unknown_flags(self, flags: list[str]) -> MedsftError:
        known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        hints = []
        for flag in flags:
            close = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1, cutoff=0.75)
            hints.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
        return MedsftError(f"unknown argument(s): {', '.join(hints)}; run with --help for the accepted arguments")


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None) -> tuple:
    """Parse a recipe (positional or ``--config``) plus CLI overrides into the given dataclasses.

    Unknown keys in the recipe and unknown flags are errors naming the key (with the closest valid flag); an
    abbreviated flag is refused.

    Returns:
        One instance per dataclass, then the set of argument names the user set (in the recipe or on the CLI),
        which is what ``run_dir.write_recipe`` records.
    """
    argv = _recipe_argv(sys.argv[1:] if argv is None else argv)
    parser = _Parser(dataclass_types, prog=prog)
    explicit = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--") and a != "--config"}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise MedsftError("--config needs a recipe path")
        path = argv[i + 1]
        known = {action.dest for action in parser._actions}
        recipe = load_recipe(path)
        if not recipe:  # an empty recipe sets nothing (TRL's parser would refuse it with a traceback)
            raise MedsftError(f"{path}: the recipe is empty; it needs at least model_name_or_path and dataset_name")
        recipe_keys = set(recipe) - {"env"}
        explicit |= recipe_keys
        unknown = sorted(recipe_keys - known)
        if unknown:
            raise MedsftError(
                f"{path}: unknown key(s) {', '.join(unknown)}; run with --help for the accepted arguments"
            )
    try:
        *parsed, remaining = parser.parse_args_and_config(argv, return_remaining_strings=True)
    except (ValueError, TypeError) as e:  # transformers'/TRL's own argument checks
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        raise MedsftError(f"invalid arguments: {' '.join(lines)[:400] or type(e).__name__}") from None
    flags = [a for a in remaining if a.startswith("-")]
    if remaining:
        raise parser.unknown_flags(flags or remaining)
    return (*parsed, explicit)
