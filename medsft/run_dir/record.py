"""What a run directory records (``recipe.yaml``, ``run_config.json``, ``run_manifest.json``) and the one reader of
it, ``read_run``, that generation, publishing, the model card, adapter loading and evaluation use."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from medsft.core.errors import MedsftError
from medsft.data.io import read_json, write_atomic

RECIPE_FILE = "recipe.yaml"
CONFIG_FILE = "run_config.json"  # not config.json: a full fine-tune saves its model config under that name
MANIFEST_FILE = "run_manifest.json"
# Fields never written anywhere (secrets)
SECRET_FIELDS = {"hub_token", "push_to_hub_token"}
# Flags about one invocation, not the run: not recorded in recipe.yaml (a rerun of it would resume or delete)
INVOCATION_FIELDS = {"resume_from_checkpoint", "overwrite_output_dir"}


def read_manifest(run_dir: str | Path) -> dict | None:
    """The run's ``run_manifest.json`` (None when there is none), with an error naming the file if unreadable."""
    path = Path(run_dir) / MANIFEST_FILE
    return read_json(path, what="run manifest") if path.is_file() else None


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


def write_recipe(output_dir: str, keys: set[str], *configs) -> Path:
    return write_atomic(
        Path(output_dir) / RECIPE_FILE,
        "# Resolved medsft recipe: the recipe's settings with the command line's overrides applied.\n"
        "# Rerun with: accelerate launch -m medsft.train recipe.yaml\n"
        + yaml.safe_dump(resolved_recipe(keys, *configs)),
    )


def all_arguments(*configs) -> dict:
    """Every argument's effective value (after defaults, CLI overrides and validation), secrets and the invocation's
    own flags excluded: what ``run_config.json`` records."""
    return {
        f.name: plain(getattr(config, f.name))
        for config in configs
        for f in dataclasses.fields(config)
        if f.name not in SECRET_FIELDS | INVOCATION_FIELDS
    }


def write_run_config(output_dir: str, keys: set[str], *configs) -> Path:
    """``run_config.json``: every argument's effective value, and which of them the user set (``recipe.yaml``)."""
    record = {"arguments": all_arguments(*configs), "set_by_user": sorted(keys - SECRET_FIELDS - INVOCATION_FIELDS)}
    return write_atomic(Path(output_dir) / CONFIG_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def write_manifest(output_dir: str, manifest: dict) -> Path:
    """Write ``run_manifest.json``: at the start with ``status: training``, at the end with ``status: finished`` (or
    ``stopped``, by a ``STOP`` file)."""
    return write_atomic(Path(output_dir) / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _training_defaults() -> dict:
    """Every training argument's declared default, for runs written before ``run_config.json`` existed."""
    from medsft.configs.training import MedDatasetMixtureConfig, MedModelConfig, MedScriptArguments, MedSFTConfig

    defaults = {}
    for cls in (MedScriptArguments, MedSFTConfig, MedModelConfig, MedDatasetMixtureConfig):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = plain(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = plain(f.default_factory())
    return defaults


@dataclass(frozen=True)
class Run:
    """A run directory as ``medsft.train`` wrote it.

    Parameters:
        path: the directory.
        recipe: ``recipe.yaml``: the settings the user gave (rerunnable as it is).
        arguments: every argument's effective value (``run_config.json``; for runs from before it existed, the
            recipe over the arguments' declared defaults).
        manifest: ``run_manifest.json`` (empty when the run has none).
    """

    path: Path
    recipe: dict
    arguments: dict
    manifest: dict

    def __getitem__(self, name: str):
        return self.arguments[name]

    def get(self, name: str, default=None):
        return self.arguments.get(name, default)

    @property
    def finished(self) -> bool:
        return run_finished(self.manifest)

    @property
    def is_adapter(self) -> bool:
        return (self.path / "adapter_config.json").is_file()

    @property
    def is_full_model(self) -> bool:
        return not self.is_adapter and (self.path / "config.json").is_file()

    @property
    def base(self) -> dict:
        """The base model as training recorded it: ``name``, ``gguf_sha256``, ``fingerprint``, ``load_in_4bit``."""
        return self.manifest.get("model") or {}

    @property
    def model_name_or_path(self) -> str | None:
        return self.arguments.get("model_name_or_path")

    @property
    def dataset_format(self) -> str:
        return self.arguments["dataset_format"]

    @property
    def load_in_4bit(self) -> bool:
        """Whether the adapter was trained on a 4-bit base (QLoRA)."""
        return bool(self.arguments.get("load_in_4bit"))

    @property
    def added_tokens(self) -> list[str]:
        return list((self.manifest.get("dataset") or {}).get("special_tokens") or [])

    def replace(self, **changes) -> Run:
        return dataclasses.replace(self, **changes)


def read_run(run_dir: str | Path, require_finished: bool = True) -> Run:
    """Read a run directory written by ``medsft.train``; errors say what is wrong and what to do.

    ``require_finished``: refuse a run whose training has not finished (its weights are not the result yet).
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise MedsftError(f"run directory not found: {run_dir}")
    recipe = read_recipe(path)
    if recipe is None:
        raise MedsftError(f"{run_dir} has no {RECIPE_FILE}: is it a directory written by medsft.train?")
    if require_finished:
        check_finished(path)
    config_file = path / CONFIG_FILE
    if config_file.is_file():
        arguments = read_json(config_file, what="run config").get("arguments") or {}
    else:
        arguments = {**_training_defaults(), **recipe}
    return Run(path, recipe, arguments, read_manifest(path) or {})
