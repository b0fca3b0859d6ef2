"""medsft: supervised fine-tuning recipes for medical text, built on TRL."""

__version__ = "0.1.0"
