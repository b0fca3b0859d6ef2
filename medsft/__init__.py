"""medsft: supervised fine-tuning recipes for medical text, built on TRL."""

from medsft.core.noise import silence_at_import

__version__ = "0.1.0"

silence_at_import()
