"""Training's argument dataclasses: TRL's own, extended.

Each class extends TRL's own, so every flag a TRL user knows (``--model_name_or_path``, ``--dataset_name``,
``--load_in_4bit``, ``--lora_r``, ``--packing``, ``--max_length``, ...) keeps its name; medsft adds only what it needs.

A training recipe is a YAML file whose keys are these fields (``medsft.configs.parser``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig
from trl.scripts.utils import DatasetConfig

from medsft.core.errors import MedsftError
from medsft.data.registry import DATASET_OPTIONS, DECONTAMINATION_POLICIES, DatasetOptions
from medsft.modeling.packing import PACKED_LAYOUTS
from medsft.modeling.trainer import LOSS_HEADS

DATASET_TYPES = (
    "auto", "wikidoc", "pubmedqa", "pubmedqa_artificial", "medquad", "pubmed_abstracts", "clinical_notes", "hf"
)  # fmt: skip
DATASET_FORMATS = ("chat", "instruction", "text", "special_tokens")
LORA_TARGET_PRESETS = ("default", "attention", "all-linear")


@dataclass
class MedScriptArguments(ScriptArguments):
    """Data arguments: TRL's ``ScriptArguments`` plus the medical dataset choice and formatting.

    Parameters:
        dataset_type: which medsft loader reads ``dataset_name``: ``wikidoc``, ``pubmedqa``, ``pubmedqa_artificial``
            (PQA-A, the generated yes/no questions: ``ori_pqaa.json``, or ``qiaojin/PubMedQA`` config
            ``pqa_artificial``), ``medquad``,
            ``pubmed_abstracts``, ``clinical_notes`` (generated; no ``dataset_name`` needed). ``auto`` recognises the
            Hub ids medsft knows and the official local layouts (PubMedQA's ``ori_pqal.json``, MedQuAD's XML tree,
            the WikiDoc JSON). ``hf`` passes a dataset already in a TRL format (``messages``,
            ``prompt``/``completion`` or ``text``) straight through.
        dataset_format: ``chat`` (messages through the model's chat template), ``instruction`` (plain-text
            prompt/completion), ``text`` (causal LM on every token) or ``special_tokens`` (MedQuAD's
            ``<question> … <answer> … <end>``, tokens added to the tokenizer). Each dataset lists the ones it has.
        validation_size: fraction held out (seeded) as validation; by default each dataset's own (PubMedQA 0.1 of
            the 500 non-test questions = 50; others 0.05).
        max_train_samples: use only the first N training examples (after shuffling with the seed), for quick runs.
        pubmedqa_long_answer: PubMedQA formats follow the yes/no/maybe word with the long answer (a rationale).
        pubmedqa_reference: the PubMedQA release whose official test set decontamination and the abstract loader
            keep out of training (a local directory, or the Hub id; default: the data itself when it is PubMedQA,
            else ``qiaojin/PubMedQA``).
        pubmedqa_test_file: the official ``test_ground_truth.json`` when it is not beside the PubMedQA data.
        pubmedqa_balance_labels: PubMedQA: repeat the training questions with the rarer answers ("no", "maybe")
            until every answer is as common as "yes" (whole copies, then a seeded draw; counted in the log and the
            run record). Validation keeps the real answer prior. Refused for other datasets.
        medquad_top_k_focus: keep only the k MedQuAD foci with the most question-answer pairs.
        num_notes / notes_seed: size and seed of the generated clinical-notes corpus.
        max_truncated_share: examples whose loss-carrying tokens (the answer) ``max_length`` cuts away entirely
            would train on nothing: they are dropped and counted, and above this share of the training examples the
            run is refused (raise ``max_length``, or set this higher to accept it). Default 0.05.
        decontamination: what to do with training rows that overlap the PubMedQA test set: ``error``, ``drop``,
            ``warn`` or ``off``. Default: ``error`` for PubMedQA and PubMed abstracts, ``warn`` otherwise.
        benchmark_references: ``medqa=PATH,mmlu=PATH,medmcqa=PATH`` (local releases or Hub ids): also check the
            training rows against those benchmarks' scored questions (same policy; counts per benchmark in the log,
            manifest and card).
    """

    dataset_type: str = field(
        default="auto",
        metadata={"help": "medsft loader for dataset_name.", "choices": list(DATASET_TYPES)},
    )
    dataset_format: str = field(
        default="chat",
        metadata={"help": "How examples are presented to the model.", "choices": list(DATASET_FORMATS)},
    )
    validation_size: float | None = field(
        default=None,
        metadata={"help": "Fraction held out, seeded, as validation (0 for none; default: the dataset's own)."},
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Train on at most this many examples (for quick runs)."},
    )
    pubmedqa_long_answer: bool = field(
        default=False,
        metadata={"help": "PubMedQA: follow the yes/no/maybe answer with the long answer."},
    )
    pubmedqa_reference: str | None = field(
        default=None,
        metadata={"help": "PubMedQA release (local dir or Hub id) whose official test set is kept out of training."},
    )
    pubmedqa_test_file: str | None = field(
        default=None,
        metadata={"help": "Path to the official PubMedQA test_ground_truth.json, if not beside the data."},
    )
    pubmedqa_balance_labels: bool = field(
        default=False,
        metadata={
            "help": "PubMedQA: oversample the training questions answered no/maybe to the count of yes "
            "(validation keeps the real prior)."
        },
    )
    medquad_top_k_focus: int | None = field(
        default=None,
        metadata={"help": "MedQuAD: keep only the k foci with the most question-answer pairs."},
    )
    max_truncated_share: float = field(
        default=0.05,
        metadata={
            "help": "Largest share of training examples whose whole answer max_length may cut away (they are "
            "dropped and counted); above it the run is refused."
        },
    )
    num_notes: int = field(default=2000, metadata={"help": "clinical_notes: how many notes to generate."})
    notes_seed: int = field(default=0, metadata={"help": "clinical_notes: generator seed."})
    decontamination: str | None = field(
        default=None,
        metadata={
            "help": "Training rows overlapping the PubMedQA test set: error, drop, warn or off (default per dataset).",
            "choices": list(DECONTAMINATION_POLICIES),
        },
    )
    benchmark_references: str | None = field(
        default=None,
        metadata={"help": "Also decontaminate against these benchmarks: medqa=PATH,mmlu=PATH,medmcqa=PATH."},
    )

    def __post_init__(self):
        DatasetOptions(**{name: getattr(self, name) for name in DATASET_OPTIONS})  # the loaders' own checks
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise MedsftError(f"max_train_samples must be positive, got {self.max_train_samples}")
        if not 0.0 <= self.max_truncated_share <= 1.0:
            raise MedsftError(f"max_truncated_share must be in [0, 1], got {self.max_truncated_share}")


@dataclass
class MedDatasetConfig(DatasetConfig):
    """One dataset of a mixture: TRL's ``DatasetConfig`` (``path``, ``fraction``, ...) plus medsft's loader
    ``type`` and ``format`` (default: the top-level ``dataset_type`` rule ``auto`` and ``dataset_format``) and its own
    dataset options (``validation_size``, ``medquad_top_k_focus``, ``num_notes`` ...: ``data.registry.DatasetOptions``;
    each unset one takes the top-level value)."""

    type: str = "auto"
    format: str | None = None
    validation_size: float | None = None
    pubmedqa_long_answer: bool | None = None
    pubmedqa_reference: str | None = None
    pubmedqa_test_file: str | None = None
    pubmedqa_balance_labels: bool | None = None
    medquad_top_k_focus: int | None = None
    num_notes: int | None = None
    notes_seed: int | None = None
    decontamination: str | None = None
    benchmark_references: str | None = None

    def __post_init__(self):
        if self.type not in DATASET_TYPES:
            raise MedsftError(f"datasets: {self.path}: unknown type '{self.type}' (one of {', '.join(DATASET_TYPES)})")
        if self.format is not None and self.format not in DATASET_FORMATS:
            raise MedsftError(
                f"datasets: {self.path}: unknown format '{self.format}' (one of {', '.join(DATASET_FORMATS)})"
            )
        own = {name: getattr(self, name) for name in DATASET_OPTIONS if getattr(self, name) is not None}
        try:
            DatasetOptions(**own)
        except MedsftError as e:
            raise MedsftError(f"datasets: {self.path}: {e}") from None


@dataclass
class MedDatasetMixtureConfig(DatasetMixtureConfig):
    """TRL's mixture shape, in a recipe::

    datasets:
      - {path: ../shared/data/pubmedqa, type: pubmedqa, format: instruction, fraction: 0.5}
      - {path: ../shared/data/medquad, type: medquad, format: instruction, fraction: 0.5}
    """

    datasets: list[MedDatasetConfig] = field(
        default_factory=list,
        metadata={"help": "Datasets to mix (recipe only): path, type, format, fraction."},
    )

    def __post_init__(self):
        for i, dataset in enumerate(self.datasets):
            if isinstance(dataset, dict):
                unknown = set(dataset) - set(MedDatasetConfig.__dataclass_fields__)
                if unknown:
                    raise MedsftError(f"datasets[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
                if "path" not in dataset:
                    raise MedsftError(f"datasets[{i}]: needs a path")
                self.datasets[i] = MedDatasetConfig(**dataset)
        # Fractions are checked before any dataset is loaded: on every dataset or none, non-negative, not all 0
        fractions = [d.fraction for d in self.datasets]
        if any(f is not None for f in fractions):
            missing = [d.path for d in self.datasets if d.fraction is None]
            if missing:
                raise MedsftError(f"datasets: a fraction on every dataset or on none; {', '.join(missing)} has none")
            if any(f < 0 for f in fractions) or sum(fractions) <= 0:
                raise MedsftError(f"datasets: fractions must be non-negative and not all 0, got {fractions}")
        if self.streaming:
            raise MedsftError("streaming mixtures are not supported: medsft's loaders clean and split in memory")
        if self.test_split_size is not None:
            raise MedsftError("test_split_size is not used by medsft: each dataset has its own validation split")


@dataclass
class MedModelConfig(ModelConfig):
    """Model arguments: TRL's ``ModelConfig`` plus LoRA target presets and the GGUF cache.

    Parameters:
        lora_target_preset: used when ``lora_target_modules`` is not given. ``default``: GPT-2 ``c_attn`` +
            ``c_proj`` (``c_proj`` is both ``attn.c_proj`` and ``mlp.c_proj``), Llama-type q/k/v/o.
            ``attention``: attention projections only. ``all-linear``: every linear layer but the output head.
        gguf_cache_dir: where a ``.gguf`` model is dequantized to safetensors once and reused. Defaults to
            ``$MEDSFT_CACHE/gguf`` or ``~/.cache/medsft/gguf``.
        adapter_strength: the saved adapter's LoRA update is the trained one times this (``lora_alpha`` and every
            ``alpha_pattern`` entry of its ``adapter_config.json`` scaled; the weights untouched): below 1 it sits
            between the base and the trained adapter, as WiSE-FT's weight mix does. Only the run's result is scaled;
            its checkpoints keep the trained strength, so a resume trains on as before.
    """

    lora_target_preset: str = field(
        default="default",
        metadata={"help": "LoRA targets when lora_target_modules is unset.", "choices": list(LORA_TARGET_PRESETS)},
    )
    gguf_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Cache for dequantized GGUF models (default $MEDSFT_CACHE/gguf or ~/.cache/medsft/gguf)."},
    )
    adapter_strength: float = field(
        default=1.0,
        metadata={"help": "The saved adapter's LoRA update times this (lora_alpha scaled; checkpoints keep 1)."},
    )

    def __post_init__(self):
        super().__post_init__()
        # TRL turns a one-element list into a bare string (so that "all-linear" works), but peft reads a bare string
        # as a regex that must match the whole module path, so ["c_attn"] would silently match nothing.
        if isinstance(self.lora_target_modules, str) and self.lora_target_modules != "all-linear":
            self.lora_target_modules = [self.lora_target_modules]
        # The preset only applies when no modules are named; both set (e.g. a recipe's list and a command-line preset)
        # would silently ignore the preset, so the pair is refused with both ways out.
        if self.lora_target_modules is not None and self.lora_target_preset != "default":
            modules = self.lora_target_modules
            named = modules if isinstance(modules, str) else ", ".join(modules)
            raise MedsftError(
                f"--lora_target_preset {self.lora_target_preset} has no effect when lora_target_modules is set "
                f"({named}): give one of them (to override a recipe's module list from the command line, pass "
                f"--lora_target_modules instead, e.g. --lora_target_modules all-linear; to override a recipe's "
                f"preset, add --lora_target_preset default)"
            )
        for name in ("lora_r", "lora_alpha"):
            if self.use_peft and getattr(self, name) < 1:
                raise MedsftError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise MedsftError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not (math.isfinite(self.adapter_strength) and self.adapter_strength > 0):
            raise MedsftError(f"--adapter_strength must be a number above 0, got {self.adapter_strength}")
        if self.use_peft and self.adapter_strength != 1:
            # alpha scales only LoRA's low-rank update BA: these parts of an adapter would stay at full strength
            for flag, part in (
                ("use_dora", "DoRA's trained magnitude vector"),
                ("lora_modules_to_save", "modules saved whole"),
            ):
                if getattr(self, flag):
                    raise MedsftError(
                        f"--adapter_strength {self.adapter_strength} cannot be used with --{flag}: it scales LoRA's "
                        f"low-rank update (through lora_alpha), and the adapter's {part} would stay at full "
                        "strength; leave --adapter_strength at 1"
                    )
        if self.load_in_4bit and not self.use_peft:
            raise MedsftError("load_in_4bit needs use_peft: a 4-bit base model can only be trained through adapters")


@dataclass
class MedSFTConfig(SFTConfig):
    """Training arguments: TRL's ``SFTConfig`` with medsft's output-directory safety.

    Parameters:
        overwrite_output_dir: delete a non-empty ``output_dir`` and start over; only a directory that is a medsft run
            (manifest, recipe.yaml or checkpoint-*), and only once every other check has passed. Without it (or
            ``resume_from_checkpoint``) a non-empty output directory is an error, never overwritten.
        bf16: ``None`` (default) means bf16 mixed precision where the GPU supports it, float32 elsewhere. ``true``
            on a machine without a GPU trains in bf16 mixed precision on the CPU (medsft sets ``use_cpu``, which
            transformers asks for): faster where the CPU has AMX or AVX512-BF16 (1.10x float32's tokens/s on the
            MedQuAD recipe, 1.57x with ``return_freed_memory`` false; docs/RESULTS.md, section 4), slower where it
            has neither (medsft.train warns).
        return_freed_memory: give freed tensor memory back to the system at once (Linux, glibc: every block of 1 MB
            or more mapped on its own; ``medsft.core.memory``), so a CPU run's resident memory follows what it holds.
            ``false`` leaves glibc's default, which keeps freed blocks of up to 32 MB in the process for reuse:
            fewer page faults, faster at first (1.43x in bf16 on the MedQuAD recipe's first micro-batches), but over
            a long CPU run slower again and about twice the resident peak (docs/RESULTS.md, section 4).
        dataloader_pin_memory: turned off on machines without an accelerator, where it does nothing.
        logging_first_step: True by default (transformers: False), so a run shows its loss after one step; the last
            step is always logged too (``medsft.modeling.trainer.LogFinalStep``), whatever ``logging_steps`` is.
        early_stopping_patience: stop when the validation metric (``metric_for_best_model``, default the loss) has
            not improved for this many evaluations; needs ``load_best_model_at_end`` so the best model is saved.
            ``0`` turns it off (what a recipe that sets it needs for a run without validation).
        packed_layout: how a packed batch reaches the attention (``medsft.modeling.packing``): ``auto`` (default)
            picks TRL's padding-free row for flash/flex attention, ``segments`` (SDPA per example) on CPU and
            ``rows`` (one row per bin) on a GPU; or name one of ``padding_free``, ``segments``, ``rows``.
        loss_head: how the loss reaches the vocabulary (``medsft.modeling.trainer``): ``auto`` (default) uses TRL's
            chunked fused LM head on a GPU and the model's own full logits on CPU, where they measured 1.11-1.27x
            faster per step (docs/RESULTS.md); or ``fused`` / ``full_logits``. Runs that train added tokens always
            use the full logits.
        report_to: ``tensorboard`` by default (transformers: ``none``): event files under the run directory's
            ``runs/`` (``tensorboard --logdir runs/x/runs``); ``none`` turns it off. Every run also gets
            ``loss_curve.png`` whatever this says.
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Delete a non-empty output_dir that is a medsft run and start over (otherwise an error)."},
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement (transformers' EarlyStoppingCallback); "
            "0 turns it off."
        },
    )

    logging_first_step: bool = field(
        default=True,
        metadata={"help": "Log the first step's loss (medsft's default: a CPU step can take minutes)."},
    )
    report_to: None | str | list[str] = field(
        default="tensorboard",
        metadata={"help": "Where to log: tensorboard (medsft's default: output_dir/runs), none, wandb …"},
    )
    return_freed_memory: bool = field(
        default=True,
        metadata={
            "help": "Give freed tensor memory back to the system at once (Linux/glibc; resident memory follows what "
            "the run holds); false keeps it for reuse: faster on CPU, higher resident peak."
        },
    )
    packed_layout: str = field(
        default="auto",
        metadata={
            "help": "With packing: auto (from the attention in use), padding_free (TRL's one row), segments (SDPA "
            "per example) or rows (one row per packed bin).",
            "choices": list(PACKED_LAYOUTS),
        },
    )

    loss_head: str = field(
        default="auto",
        metadata={
            "help": "auto (TRL's fused LM head on a GPU, the model's full logits on CPU, where they are faster), "
            "fused or full_logits.",
            "choices": list(LOSS_HEADS),
        },
    )

    def __post_init__(self):
        import torch

        if self.loss_head not in LOSS_HEADS:
            raise MedsftError(f"--loss_head must be one of {', '.join(LOSS_HEADS)}, got {self.loss_head!r}")
        if self.packed_layout not in PACKED_LAYOUTS:
            raise MedsftError(
                f"--packed_layout must be one of {', '.join(PACKED_LAYOUTS)}, got {self.packed_layout!r}"
            )
        if self.bf16 is None and not self.fp16:
            # TRL defaults bf16 to True everywhere; on a CPU without bf16 kernels that is slow and on old GPUs it
            # fails, so medsft turns it on only where the hardware supports it.
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if self.bf16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise MedsftError(
                f"bf16 is set (a recipe's bf16: true, or --bf16 true) but this GPU ({torch.cuda.get_device_name()}) "
                "has no bf16: add --bf16 false (float32), or --bf16 false --fp16 true"
            )
        if self.bf16 and not torch.accelerator.is_available():
            # bf16 mixed precision asked for on a machine without a GPU: transformers refuses it unless use_cpu is
            # set ("Your setup doesn't support bf16/gpu"); on such a machine use_cpu changes nothing else.
            self.use_cpu = True
        if not torch.accelerator.is_available():
            # Pinned memory only speeds host-to-device copies; without an accelerator torch's DataLoader warns on
            # every run that it is ignored, so medsft does not ask for it there.
            self.dataloader_pin_memory = False
        if getattr(self, "activation_checkpointing", False) is None:
            # transformers 5.24 renamed gradient_checkpointing (TRL's default True, and the recipes' key) to
            # activation_checkpointing and warns on every run that sets only the old name; the same value, new name
            self.activation_checkpointing = self.gradient_checkpointing
        processes = launched_processes()
        if processes > 1 and not torch.cuda.is_available():
            # Measured (accelerate 1.15, transformers 5.23): `accelerate launch` with several processes on a machine
            # without GPUs starts the workers but does not tell the Trainer to use the CPU, so each worker silently
            # trains alone on all the data. use_cpu makes the Trainer join the gloo process group.
            self.use_cpu = True
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise MedsftError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.max_length is not None and self.max_length < 1:
            raise MedsftError(f"--max_length must be a positive number of tokens, got {self.max_length}")
        if self.learning_rate < 0 or self.num_train_epochs < 0:
            raise MedsftError("--learning_rate and --num_train_epochs must not be negative")
        if self.max_steps == 0:
            raise MedsftError("--max_steps 0 trains nothing: give a positive number, or -1 to train num_train_epochs")
        if self.max_steps < 0 and self.num_train_epochs == 0:
            raise MedsftError("--num_train_epochs 0 trains nothing (and would save the untrained model as the run)")
        # transformers reads these values as "off" or "unset" without a word; medsft asks for the explicit spelling
        if self.weight_decay < 0:
            raise MedsftError(f"--weight_decay must not be negative, got {self.weight_decay}")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise MedsftError(f"--max_grad_norm must not be negative (0 turns clipping off), got {self.max_grad_norm}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise MedsftError(
                f"--save_total_limit {self.save_total_limit} would keep every checkpoint (transformers reads it as no "
                "limit): give 1 or more, or leave it out"
            )
        for name in ("eval_steps", "save_steps"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise MedsftError(f"--{name} must be positive, got {getattr(self, name)}")
        check_seed(self.seed)
        if self.early_stopping_patience == 0:  # the command line's way to turn off a recipe's early stopping
            self.early_stopping_patience = None
        if (patience := self.early_stopping_patience) is not None:
            if patience < 0:
                raise MedsftError(f"--early_stopping_patience must be positive (0 turns it off), got {patience}")
            if self.eval_strategy == "no" or not self.load_best_model_at_end:
                raise MedsftError(
                    f"early_stopping_patience {patience} needs eval_strategy steps/epoch and load_best_model_at_end "
                    "true; for a run without validation add --eval_strategy no --load_best_model_at_end false "
                    "--early_stopping_patience 0 (0 turns it off)"
                )
        _check_tensorboard(self.report_to)
        super().__post_init__()
        if processes > 1 and self.world_size != processes:
            raise MedsftError(
                f"launched {processes} processes but the trainer sees world_size={self.world_size}; "
                "each process would train alone on all the data (see accelerate_configs/README.md)"
            )


def check_seed(seed: int) -> None:
    """The seeds transformers' ``set_seed`` accepts (every command seeds; outside this range it is a traceback)."""
    if not 0 <= seed < 2**32:
        raise MedsftError(f"--seed must be between 0 and 2**32 - 1, got {seed}")


def _check_tensorboard(report_to) -> None:
    """The Trainer would fail with a traceback when it builds the callback; say what to install instead."""
    import importlib.util

    wanted = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "tensorboard" in wanted and not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        raise MedsftError("--report_to tensorboard needs the tensorboard package: pip install tensorboard (or pass "
                          "--report_to none)")  # fmt: skip


def launched_processes() -> int:
    """Number of processes a launcher (accelerate/torchrun) started, from the environment it sets."""
    return int(os.environ.get("WORLD_SIZE", "1"))
