"""The recipe/CLI parser every command uses: TRL's ``TrlParser`` with one-line errors.

A recipe is a YAML file whose keys are the command's dataclass fields. It is given positionally (``medsft.train
recipes/x.yaml``) or with ``--config``; flags on the command line override the recipe.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Sequence

import yaml
from trl import TrlParser

from medsft.configs.help import handle_help
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

    def unknown_flags(self, flags: list[str], dataclass_types: Sequence[type]) -> MedsftError:
        known = [f"--{f.name}" for cls in dataclass_types for f in dataclasses.fields(cls)]
        hints = []
        for flag in flags:
            close = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1, cutoff=0.75)
            hints.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
        return MedsftError(f"unknown argument(s): {', '.join(hints)}; run with --help for the accepted arguments")


def parse_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    doc: str = "",
    usage: str | None = None,
) -> tuple:
    """Parse a recipe (positional or ``--config``) plus CLI overrides into the given dataclasses.

    What TRL's ``parse_args_and_config`` does (the recipe's values become the defaults, ``env`` is exported, flags
    override), with what it lacks: the recipe is read once with errors naming the file, unknown recipe keys (TRL's
    ``set_defaults_with_config`` returns them) and unknown flags are one line with the closest valid flag, an
    abbreviated flag is refused, and the keys the user set are returned.

    ``-h``/``--help`` prints medsft's arguments first and the lead TRL flags (``medsft.configs.help``),
    ``--help-all`` every flag; ``doc`` is the command module's docstring (the help shows its first paragraph and
    examples), ``usage`` the usage line of a command that reads no recipe.

    Returns:
        One instance per dataclass, then the set of argument names the user set (in the recipe or on the CLI),
        which is what ``run_dir.write_recipe`` records.
    """
    argv = _recipe_argv(sys.argv[1:] if argv is None else argv)
    parser = _Parser(dataclass_types, prog=prog)
    handle_help(argv, parser, prog, doc, dataclass_types, usage)
    explicit = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--") and a != "--config"}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise MedsftError("--config needs a recipe path")
        path = argv[i + 1]
        argv = argv[:i] + argv[i + 2 :]
        recipe = load_recipe(path)
        if not recipe:  # an empty recipe sets nothing (TRL's parser would refuse it with a traceback)
            raise MedsftError(f"{path}: the recipe is empty; it needs at least model_name_or_path and dataset_name")
        env = recipe.pop("env", None) or {}
        if not isinstance(env, dict):
            raise MedsftError(f"{path}: env must be a mapping of environment variables to values")
        os.environ.update({key: str(value) for key, value in env.items()})
        unknown = parser.set_defaults_with_config(**recipe)[::2]  # ["--key", "value", ...] it did not use
        if unknown:
            names = ", ".join(sorted(flag[2:] for flag in unknown))
            raise MedsftError(f"{path}: unknown key(s) {names}; run with --help for the accepted arguments")
        explicit |= set(recipe)
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    except (ValueError, TypeError) as e:  # transformers'/TRL's own argument checks
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        raise MedsftError(f"invalid arguments: {' '.join(lines)[:400] or type(e).__name__}") from None
    flags = [a for a in remaining if a.startswith("-")]
    if remaining:
        raise parser.unknown_flags(flags or remaining, dataclass_types)
    return (*parsed, explicit)
