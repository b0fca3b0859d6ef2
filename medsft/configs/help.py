"""``--help`` that leads with what matters: medsft's own arguments, then the TRL/transformers flags a recipe changes
most, then how to see the rest (``--help-all``: argparse's full listing of every TRL/transformers flag).

``medsft.train --help`` was 934 lines of argparse output, mostly ``TrainingArguments``; the flags a user came for were
somewhere in it. Every flag is still accepted and listed by ``--help-all``.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections.abc import Sequence

HELP_ALL = "--help-all"
WIDTH = 100

# The TRL/transformers flags a recipe sets most, in the order a user thinks of them
LEAD_FLAGS = (
    "model_name_or_path", "dataset_name", "output_dir", "max_steps", "num_train_epochs", "learning_rate",
    "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
    "packing", "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit",
    "use_bnb_nested_quant", "dtype", "attn_implementation", "gradient_checkpointing", "eval_strategy", "eval_steps",
    "logging_steps", "save_steps", "save_total_limit", "resume_from_checkpoint", "seed", "push_to_hub",
    "hub_model_id",
)  # fmt: skip


def _is_medsft(cls: type) -> bool:
    return cls.__module__.startswith("medsft.")


def own_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a medsft class declares itself (new, or a TRL field with medsft's default), in declaration order."""
    names = {name for klass in cls.__mro__ if _is_medsft(klass) for name in vars(klass).get("__annotations__", {})}
    return [f for f in dataclasses.fields(cls) if f.name in names and f.init]


def _entry(field: dataclasses.Field) -> str:
    meta = field.metadata or {}
    choices = meta.get("choices")
    flag = f"--{field.name}" + (f" {{{','.join(map(str, choices))}}}" if choices else "")
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        default = None
    text = (meta.get("help") or "").strip().replace("\n", " ").replace("%%", "%")
    if default not in (None, "", [], ()):
        text += f" (default: {default})"
    if len(flag) <= 30:
        first, *rest = textwrap.wrap(text, WIDTH - 34) or [""]
        lines = [f"  {flag:<30}  {first}", *(" " * 34 + line for line in rest)]
    else:
        lines = [f"  {flag}", *(" " * 34 + line for line in textwrap.wrap(text, WIDTH - 34))]
    return "\n".join(lines)


def _split_doc(doc: str) -> tuple[str, str]:
    """A command module's docstring -> its first paragraph and its ```bash example block (or "")."""
    doc = doc or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    examples = ""
    if "```bash" in doc:
        examples = doc.split("```bash", 1)[1].split("```", 1)[0].strip("\n").replace("\\\\", "\\")
    return first, examples


def short_help(prog: str, doc: str, dataclass_types: Sequence[type], usage: str | None = None) -> str:
    """The help text: usage, what the command does (``doc``: the command module's docstring, whose first paragraph
    and ```bash examples are shown), medsft's arguments, the lead TRL flags, and the rest counted. ``usage``
    replaces the recipe-reading usage line for commands that take no recipe."""
    ours: list[dataclasses.Field] = []
    theirs: dict[str, dataclasses.Field] = {}
    for cls in dataclass_types:
        own = own_fields(cls) if _is_medsft(cls) else []
        ours += own
        own_names = {f.name for f in own}
        theirs.update({f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in own_names})
    seen = {f.name for f in ours}
    lead = [theirs[name] for name in LEAD_FLAGS if name in theirs and name not in seen]
    rest = len(set(theirs) - seen - {f.name for f in lead})
    description, examples = _split_doc(doc)
    parts = [f"usage: {usage or f'{prog} [RECIPE.yaml] [--flag value ...]'}", "", textwrap.fill(description, WIDTH)]
    if examples:
        parts += ["", "examples:", textwrap.indent(examples, "  ")]
    if usage is None:
        parts += [
            "",
            "RECIPE.yaml (positional, or --config RECIPE.yaml): a YAML file whose keys are the arguments below; flags",
            "given after it override its values.",
        ]
    parts += ["", "medsft's arguments:", *(_entry(f) for f in ours)]
    if lead:
        parts += ["", "TRL/transformers arguments recipes set most (every one keeps its TRL name):"]
        parts += [_entry(f) for f in lead]
    if rest:
        parts += ["", f"{rest} more TRL/transformers arguments (SFTConfig, ModelConfig, ...): {prog} {HELP_ALL}"]
    return "\n".join(parts) + "\n"


def handle_help(argv: Sequence[str], parser, prog: str, doc: str, dataclass_types, usage: str | None) -> None:
    """Print the short help for ``-h``/``--help``, argparse's full listing for ``--help-all``, and exit 0."""
    if HELP_ALL in argv:
        parser.print_help()
        sys.exit(0)
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(short_help(prog or parser.prog, doc, dataclass_types, usage))
        sys.exit(0)
