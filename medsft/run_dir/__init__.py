"""The run directory: the one contract between training and everything that reads a run.

A run directory holds the LoRA adapter (safetensors) or full model, the tokenizer, ``recipe.yaml`` (the settings the
user gave, after CLI overrides: readable and rerunnable), ``run_config.json`` (every argument's effective value,
defaults included), ``run_manifest.json`` (library versions, git commit, seed, start/end time, base model and its
fingerprint, final train loss, data counts; ``status`` ``training`` from the start, ``finished`` at the end,
``stopped`` when a ``STOP`` file ended it early: ``stop.py``) and the Trainer's ``checkpoint-*`` directories.

Training decides everything about the directory first (``output_dir.plan_output_dir``: refusals, the checkpoint to
resume from, what an overwrite would delete) and changes it only once every other check has passed
(``clear_output_dir``). Everything that reads a run (generate, push, the card, adapter loading, evaluation) reads it
through ``record.read_run``.
"""
