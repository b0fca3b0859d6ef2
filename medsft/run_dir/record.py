"""What a run directory records and the one reader of it."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from pathlib import Path

import yaml

from medsft.core.errors import MedsftError

RECIPE_FILE = "recipe.yaml"


MANIFEST_FILE = "run_manifest.json"


# Fields never written anywhere (secrets)
SECRET_FIELDS = {"hub_token", "push_to_hub_token"}


# Flags about one invocation, not the run: not recorded in recipe.yaml (a rerun of it would resume or delete)
INVOCATION_FIELDS = {"resume_from_checkpoint", "overwrite_output_dir"}


def read_manifest(run_dir: str | Path) -> dict | None:
    """The run's ``run_manifest.json`` (None when there is none), with an error naming the file if unreadable."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MedsftError(f"{path}: unreadable ({e})") from None
    if not isinstance(manifest, dict):
        raise MedsftError(f"{path}: not a run manifest (expected a JSON object)")
    return manifest


def run_finished(manifest: dict | None) -> bool:
    """Whether a manifest records a finished run (manifests from before ``status`` existed were written at the end)."""
    if not manifest:
        return False
    return manifest.get("status", "finished" if "finished" in manifest else None) == "finished"


def check_finished(run_dir: str | Path) -> None:
    """Refuse a run directory whose training has not finished (interrupted, or still running)."""
    manifest = read_manifest(run_dir)
    if manifest is not None and not run_finished(manifest):
        raise MedsftError(
            f"{run_dir} is a run that has not finished (status '{manifest.get('status')}'): continue it with "
            "medsft.train ... --resume_from_checkpoint true, or use one of its checkpoint-* directories"
        )


def read_recipe(run_dir: Path) -> dict | None:
    path = run_dir / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise MedsftError(f"{path}: unreadable ({e})".replace("\n", " ")) from None
    return recipe if isinstance(recipe, dict) else {}


def plain(value):
    """A YAML-safe copy of a config value."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value):  # a mixture entry: only the keys that are set
        return {k: plain(v) for k, v in dataclasses.asdict(value).items() if v is not None}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):  # peft keeps target_modules as a set
        return sorted(plain(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def resolved_recipe(keys: set[str], *configs) -> dict:
    """The final value (after CLI overrides and validation) of every argument the user set, secrets and the
    invocation's own flags (resume, overwrite) excluded."""
    recipe = {}
    for config in configs:
        for f in dataclasses.fields(config):
            if f.name in keys and f.name not in SECRET_FIELDS | INVOCATION_FIELDS:
                recipe[f.name] = plain(getattr(config, f.name))
    return recipe


def _atomic_write(path: Path, text: str) -> Path:
    """Write through a temporary file and rename: a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_recipe(output_dir: str, keys: set[str], *configs) -> Path:
    return _atomic_write(
        Path(output_dir) / RECIPE_FILE,
        "# Resolved medsft recipe: the recipe's settings with the command line's overrides applied.\n"
        "# Rerun with: accelerate launch -m medsft.train recipe.yaml\n"
        + yaml.safe_dump(resolved_recipe(keys, *configs)),
    )


def write_manifest(output_dir: str, manifest: dict) -> Path:
    """Write ``run_manifest.json``: at the start with ``status: training``, at the end with ``status: finished``."""
    return _atomic_write(Path(output_dir) / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
