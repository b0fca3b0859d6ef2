"""Every command's arguments, as dataclasses (training's extend TRL's own), and the recipe/CLI parser."""

from medsft.configs.commands import EvalArguments, GenerateArguments, PreviewArguments, PushArguments
from medsft.configs.parser import load_recipe, parse_args
from medsft.configs.training import (
    MedDatasetConfig,
    MedDatasetMixtureConfig,
    MedModelConfig,
    MedScriptArguments,
    MedSFTConfig,
)

__all__ = [
    "EvalArguments", "GenerateArguments", "MedDatasetConfig", "MedDatasetMixtureConfig", "MedModelConfig",
    "MedSFTConfig", "MedScriptArguments", "PreviewArguments", "PushArguments", "load_recipe", "parse_args",
]  # fmt: skip
