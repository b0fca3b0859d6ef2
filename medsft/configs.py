"""Configuration dataclasses for medsft and the recipe/CLI parser.

Each class extends TRL's own, so every flag a TRL user knows (``--model_name_or_path``, ``--dataset_name``,
``--load_in_4bit``, ``--lora_r``, ``--packing``, ``--max_length``, ...) keeps its name; medsft adds only what it needs.

A recipe is a YAML file whose keys are these fields. It is given positionally (``medsft.train recipes/x.yaml``) or with
``--config``; flags on the command line override the recipe.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from medsft.errors import MedsftError

DATASET_TYPES = ("auto", "wikidoc", "hf")
DATASET_FORMATS = ("chat", "instruction")
LORA_TARGET_PRESETS = ("default", "attention", "all-linear")


@dataclass
class MedScriptArguments(ScriptArguments):
    """Data arguments: TRL's ``ScriptArguments`` plus the medical dataset choice and formatting.

    Parameters:
        dataset_type: which medsft loader reads ``dataset_name``. ``auto`` recognises the Hub ids medsft knows;
            a local file needs its type named (e.g. ``wikidoc``). ``hf`` passes a dataset already in a TRL format
            (``messages``, ``prompt``/``completion`` or ``text``) straight through.
        dataset_format: ``chat`` (messages through the model's chat template) or ``instruction`` (plain-text
            prompt/completion). Both train on the answer only.
        validation_size: fraction of the data held out (seeded) as the validation split.
        max_train_samples: use only the first N training examples (after shuffling with the seed), for quick runs.
    """

    dataset_type: str = field(
        default="auto",
        metadata={"help": "medsft loader for dataset_name.", "choices": list(DATASET_TYPES)},
    )
    dataset_format: str = field(
        default="chat",
        metadata={"help": "How examples are presented to the model.", "choices": list(DATASET_FORMATS)},
    )
    validation_size: float = field(
        default=0.05,
        metadata={"help": "Fraction of the data held out, seeded, as the validation split (0 for none)."},
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Train on at most this many examples (for quick runs)."},
    )

    def __post_init__(self):
        if not 0.0 <= self.validation_size < 1.0:
            raise MedsftError(f"validation_size must be in [0, 1), got {self.validation_size}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise MedsftError(f"max_train_samples must be positive, got {self.max_train_samples}")


@dataclass
class MedModelConfig(ModelConfig):
    """Model arguments: TRL's ``ModelConfig`` plus LoRA target presets and the GGUF cache.

    Parameters:
        lora_target_preset: used when ``lora_target_modules`` is not given. ``default``: GPT-2 ``c_attn`` +
            ``c_proj`` (``c_proj`` is both ``attn.c_proj`` and ``mlp.c_proj``), Llama-type q/k/v/o.
            ``attention``: attention projections only. ``all-linear``: every linear layer but the output head.
        gguf_cache_dir: where a ``.gguf`` model is dequantized to safetensors once and reused. Defaults to
            ``$MEDSFT_CACHE/gguf`` or ``~/.cache/medsft/gguf``.
    """

    lora_target_preset: str = field(
        default="default",
        metadata={"help": "LoRA targets when lora_target_modules is unset.", "choices": list(LORA_TARGET_PRESETS)},
    )
    gguf_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Cache for dequantized GGUF models (default $MEDSFT_CACHE/gguf or ~/.cache/medsft/gguf)."},
    )

    def __post_init__(self):
        super().__post_init__()
        # TRL turns a one-element list into a bare string (so that "all-linear" works), but peft reads a bare string
        # as a regex that must match the whole module path, so ["c_attn"] would silently match nothing.
        if isinstance(self.lora_target_modules, str) and self.lora_target_modules != "all-linear":
            self.lora_target_modules = [self.lora_target_modules]
        if self.load_in_4bit and not self.use_peft:
            raise MedsftError("load_in_4bit needs use_peft: a 4-bit base model can only be trained through adapters")


@dataclass
class MedSFTConfig(SFTConfig):
    """Training arguments: TRL's ``SFTConfig`` with medsft's output-directory safety.

    Parameters:
        overwrite_output_dir: delete a non-empty ``output_dir`` and start over. Without it (or
            ``resume_from_checkpoint``) a non-empty output directory is an error, never overwritten.
        bf16: ``None`` (default) means bf16 mixed precision where the GPU supports it, float32 elsewhere.
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Delete a non-empty output_dir and start over (otherwise it is an error)."},
    )

    def __post_init__(self):
        import torch

        if self.bf16 is None and not self.fp16:
            # TRL defaults bf16 to True everywhere; on a CPU without bf16 kernels that is slow and on old GPUs it
            # fails, so medsft turns it on only where the hardware supports it.
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        processes = launched_processes()
        if processes > 1 and not torch.cuda.is_available():
            # Measured (accelerate 1.15, transformers 5.23): `accelerate launch` with several processes on a machine
            # without GPUs starts the workers but does not tell the Trainer to use the CPU, so each worker silently
            # trains alone on all the data. use_cpu makes the Trainer join the gloo process group.
            self.use_cpu = True
        super().__post_init__()
        if processes > 1 and self.world_size != processes:
            raise MedsftError(
                f"launched {processes} processes but the trainer sees world_size={self.world_size}; "
                "each process would train alone on all the data (see accelerate_configs/README.md)"
            )


def launched_processes() -> int:
    """Number of processes a launcher (accelerate/torchrun) started, from the environment it sets."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple:
    """Parse a recipe (positional or ``--config``) plus CLI overrides into the given dataclasses.

    Unknown keys in the recipe are an error naming the key (TRL's parser reports them as ``--key value`` strings).

    Returns:
        One instance per dataclass, then the set of argument names the user set (in the recipe or on the CLI),
        which is what ``run_dir.write_recipe`` records.
    """
    argv = _recipe_argv(sys.argv[1:] if argv is None else argv)
    parser = TrlParser(list(dataclass_types))
    explicit = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--") and a != "--config"}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise MedsftError("--config needs a recipe path")
        path = argv[i + 1]
        known = {action.dest for action in parser._actions}
        recipe_keys = set(load_recipe(path)) - {"env"}
        explicit |= recipe_keys
        unknown = sorted(recipe_keys - known)
        if unknown:
            raise MedsftError(
                f"{path}: unknown key(s) {', '.join(unknown)}; run with --help for the accepted arguments"
            )
    return (*parser.parse_args_and_config(argv), explicit)
