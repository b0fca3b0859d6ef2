"""The arguments of the commands other than training: evaluation, generation, publishing and the data preview.

Each is a dataclass the recipe/CLI parser (``medsft.configs.parser``) fills, like training's; evaluation's model
arguments are TRL's ``ModelConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medsft.configs.training import check_seed
from medsft.core.errors import MedsftError
from medsft.data import medmcqa, medqa, mmlu, pubmedqa, wikidoc
from medsft.evaluation.task_multiple_choice import MODES as CHOICE_MODES
from medsft.evaluation.task_pubmedqa import MODES as PUBMEDQA_MODES

TASKS = ("perplexity", "pubmedqa", "medqa", "medmcqa", "mmlu")
# --tasks shorthands: the Open Medical-LLM Leaderboard's tasks (MedMCQA needs the Hub or a local copy of its release)
TASK_GROUPS = {"medical": ("pubmedqa", "medqa", "medmcqa", "mmlu")}
# tasks scored without exemplars; --num_fewshot with one of them is an error, not a silently zero-shot score
ZERO_SHOT_TASKS = ("pubmedqa", "medqa", "medmcqa")


@dataclass
class EvalArguments:
    """Evaluation arguments (the model ones are TRL's ``ModelConfig``: ``--model_name_or_path``, ``--dtype``,
    ``--load_in_4bit`` …).

    Parameters:
        adapters: LoRA adapter directories (``medsft.train`` output) or Hub ids; the base is always evaluated too. A
            full fine-tune's run directory (``use_peft: false``) is accepted as well and scored in place of the base.
        tasks: comma-separated, from ``perplexity``, ``pubmedqa``, ``medqa``, ``medmcqa``, ``mmlu`` (MMLU's six medical
            subjects), or ``medical`` for the last four.
        perplexity_dataset: a dataset medsft knows (Hub id or local path, as in training) or a .txt/.jsonl file.
        perplexity_split / perplexity_format: which split (``validation``: held out by training) and format
            (``auto``: ``chat`` when the dataset has it, else ``text``); the loss-carrying tokens of that format
            are scored.
        stride: sliding-window stride for texts longer than ``max_length`` (default ``max_length // 2``).
        pubmedqa_dataset / pubmedqa_test_file / pubmedqa_split: PubMedQA release, its official test list, and
            ``test`` (the official 500) or ``validation``.
        pubmedqa_mode: ``loglikelihood`` (lm-evaluation-harness), ``chat`` or ``generate``.
        medqa_dataset / medmcqa_dataset / mmlu_dataset: Hub id or the official release's local layout
            (``data.medqa``, ``data.medmcqa``, ``data.mmlu``); ``mmlu_subjects`` narrows MMLU to some subjects.
        medqa_split / medmcqa_split / mmlu_split: the split scored; the defaults are the leaderboard's (MedQA and
            MMLU ``test``, MedMCQA ``validation``). MedQA's ``dev`` (in the official release; GBaker's Hub copy has
            train and test only) and MMLU's ``validation`` are for choosing between runs without looking at the test
            questions (the report and the model card name the split).
        choice_mode: MedQA/MedMCQA/MMLU scoring, ``loglikelihood`` (the harness's prompts) or ``chat`` (the
            question through the chat template, for chat-trained adapters).
        num_fewshot: exemplars before each question, as the harness adds them (MMLU only: its first K dev rows; an
            error with pubmedqa, medqa or medmcqa). They are computed once per subject, not once per question.
        max_length: longest input in tokens (default: the model's context, at most 2048).
        batch_size / limit / bootstrap_samples / seed / output_dir: as named; ``limit`` keeps the first N examples
            of each task.
        allow_base_mismatch: evaluate an adapter on a base model other than the one it was trained on.
        resume: finish the evaluation in ``output_dir`` (default: the newest default report folder) that stopped
            before every model was scored: its finished models are kept, the rest scored; refused if the command
            differs from the one that wrote it (base, adapters, their weights, tasks, questions, settings).
        merge_adapters: merge each adapter into a float32 base before scoring it (an unmerged LoRA on every linear
            layer scores 1.3-1.5x slower on CPU); the same answers, log-likelihoods equal to float32 rounding. Never
            for a 4-bit or 16-bit base (merging would round the adapter into the base's precision).
    """

    adapters: list[str] = field(
        default_factory=list,
        metadata={"help": "LoRA adapter directories or Hub ids; or a full fine-tune's run directory."},
    )
    tasks: str = field(
        default="perplexity,pubmedqa",
        metadata={"help": f"Comma-separated: {', '.join(TASKS)}; or medical ({','.join(TASK_GROUPS['medical'])})."},
    )
    perplexity_dataset: str = field(default=wikidoc.HUB_ID, metadata={"help": "Text for perplexity."})
    perplexity_dataset_type: str = field(default="auto", metadata={"help": "medsft loader (as --dataset_type)."})
    perplexity_split: str = field(
        default="validation", metadata={"help": "validation or train.", "choices": ["validation", "train"]}
    )
    perplexity_format: str = field(
        default="auto",
        metadata={"help": "auto, chat, instruction or text.", "choices": ["auto", "chat", "instruction", "text"]},
    )
    stride: int | None = field(default=None, metadata={"help": "Sliding-window stride (default max_length // 2)."})
    pubmedqa_dataset: str = field(default=pubmedqa.HUB_ID, metadata={"help": "PubMedQA release (Hub id or local)."})
    pubmedqa_test_file: str | None = field(default=None, metadata={"help": "Official test_ground_truth.json."})
    pubmedqa_split: str = field(
        default="test", metadata={"help": "test or validation.", "choices": ["test", "validation"]}
    )
    pubmedqa_mode: str = field(
        default="loglikelihood", metadata={"help": "Scoring mode.", "choices": list(PUBMEDQA_MODES)}
    )
    medqa_dataset: str = field(default=medqa.HUB_ID, metadata={"help": "MedQA 4-option release (Hub id or local)."})
    medmcqa_dataset: str = field(default=medmcqa.HUB_ID, metadata={"help": "MedMCQA (Hub id or local release)."})
    mmlu_dataset: str = field(default=mmlu.HUB_ID, metadata={"help": "MMLU (Hub id or local release folder)."})
    medqa_split: str = field(
        default="test", metadata={"help": "MedQA split (dev: for choosing runs).", "choices": list(medqa.SPLITS)}
    )
    medmcqa_split: str = field(
        default="validation", metadata={"help": "MedMCQA split (the leaderboard's).", "choices": list(medmcqa.SPLITS)}
    )
    mmlu_split: str = field(
        default="test", metadata={"help": "MMLU split (validation: for choosing runs).", "choices": list(mmlu.SPLITS)}
    )
    mmlu_subjects: str = field(
        default=",".join(mmlu.SUBJECTS), metadata={"help": "Comma-separated MMLU subjects (default: the six medical)."}
    )
    choice_mode: str = field(
        default="loglikelihood",
        metadata={"help": "MedQA/MedMCQA/MMLU scoring mode.", "choices": list(CHOICE_MODES)},
    )
    num_fewshot: int = field(default=0, metadata={"help": "Few-shot exemplars (MMLU: its first K dev rows)."})
    max_new_tokens: int = field(default=16, metadata={"help": "Tokens generated per answer (generate mode)."})
    max_length: int | None = field(default=None, metadata={"help": "Longest input (default: model's, ≤ 2048)."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per forward pass."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N examples of each task."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Resamples for the accuracy CI."})
    output_dir: str | None = field(default=None, metadata={"help": "Report directory (never overwritten)."})
    seed: int = field(default=42, metadata={"help": "Seed (bootstrap, any sampling)."})
    gguf_cache_dir: str | None = field(default=None, metadata={"help": "Cache for dequantized GGUF models."})
    allow_base_mismatch: bool = field(default=False, metadata={"help": "Allow adapters trained on another base."})
    merge_adapters: bool = field(
        default=True, metadata={"help": "Merge each adapter into a float32 base before scoring (faster)."}
    )
    resume: bool = field(
        default=False, metadata={"help": "Finish the stopped evaluation in output_dir; its finished models are kept."}
    )

    def __post_init__(self):
        names = [t.strip() for t in self.tasks.split(",") if t.strip()]
        expanded = [task for name in names for task in TASK_GROUPS.get(name, (name,))]
        self.task_list = list(dict.fromkeys(expanded))  # in order, once each
        unknown = [t for t in self.task_list if t not in TASKS]
        if unknown or not self.task_list:
            choices = ", ".join([*TASKS, *TASK_GROUPS])
            raise MedsftError(f"unknown task(s) {', '.join(unknown) or '(none)'}; choose from {choices}")
        self.subject_list = tuple(s.strip() for s in self.mmlu_subjects.split(",") if s.strip())
        unknown = [s for s in self.subject_list if s not in mmlu.SUBJECTS]
        if unknown or not self.subject_list:
            raise MedsftError(
                f"--mmlu_subjects: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(mmlu.SUBJECTS)}"
            )
        if self.num_fewshot < 0:
            raise MedsftError("--num_fewshot must be 0 or more")
        zero_shot = [t for t in self.task_list if t in ZERO_SHOT_TASKS]
        if self.num_fewshot and zero_shot:
            raise MedsftError(
                f"--num_fewshot {self.num_fewshot} applies to mmlu only (its first K dev rows, as the harness takes "
                f"them); medsft scores {', '.join(zero_shot)} zero-shot only (the leaderboard's setting; the "
                "harness's medqa_4options and medmcqa draw their exemplars at random from the train split, which "
                "medsft does not reproduce): evaluate them in a command without --num_fewshot"
            )
        if self.num_fewshot and "mmlu" not in self.task_list:
            raise MedsftError(f"--num_fewshot {self.num_fewshot} applies to mmlu only, which --tasks does not ask for")
        if self.num_fewshot and self.mmlu_split == "dev":
            raise MedsftError(
                f"--num_fewshot {self.num_fewshot} with --mmlu_split dev: the exemplars are the dev split's first "
                "rows, so questions would be scored with their own answers in the prompt; score test or validation"
            )
        if self.limit is not None and self.limit < 1:
            raise MedsftError("--limit must be a positive number of examples")
        if self.batch_size < 1:
            raise MedsftError("--batch_size must be at least 1")
        check_seed(self.seed)
        if self.bootstrap_samples < 1:
            raise MedsftError("--bootstrap_samples must be at least 1 (the accuracy intervals are bootstrapped)")
        if self.max_new_tokens < 1:
            raise MedsftError("--max_new_tokens must be at least 1")
        if self.max_length is not None and self.max_length < 2:
            raise MedsftError("--max_length must be at least 2 tokens")
        if self.stride is not None and self.stride < 1:
            raise MedsftError("--stride must be at least 1 token")

    def task_datasets(self) -> list[str]:
        """The dataset of every task asked for (Hub ids or local paths)."""
        return [getattr(self, f"{task}_dataset") for task in self.task_list]


@dataclass
class EvalModelArguments:
    """The base model's arguments evaluation reads (TRL ``ModelConfig``'s names, without its training-only LoRA flags).

    Parameters:
        model_name_or_path: the base model: Hub id, local directory or ``.gguf`` file.
        load_in_4bit: evaluate on the base quantized to 4-bit. Default (unset): as the adapters were trained (one
            rule with ``medsft.generate``: a QLoRA adapter on its 4-bit base, a LoRA adapter on the full-precision
            one); without adapters, full precision.
        bnb_4bit_quant_type / use_bnb_nested_quant: the 4-bit quantization (default: the adapters' runs', else NF4
            without nesting).
    """

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model: Hub id, local directory or .gguf file."}
    )
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
    dtype: str = field(
        default="float32",
        metadata={"help": "dtype the model is loaded in.", "choices": ["auto", "bfloat16", "float16", "float32"]},
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "Attention (sdpa, eager, ...)."})
    load_in_4bit: bool | None = field(
        default=None,
        metadata={"help": "Base in 4-bit; unset: as the adapters were trained (QLoRA: 4-bit), else full precision."},
    )
    load_in_8bit: bool = field(default=False, metadata={"help": "Base in 8-bit (bitsandbytes)."})
    bnb_4bit_quant_type: str | None = field(
        default=None, metadata={"help": "4-bit type; unset: the adapters' runs', else nf4.", "choices": ["fp4", "nf4"]}
    )
    use_bnb_nested_quant: bool | None = field(
        default=None, metadata={"help": "Nested 4-bit quantization; unset: the adapters' runs', else off."}
    )
    bnb_4bit_quant_storage: str | None = field(default=None, metadata={"help": "4-bit storage dtype."})


@dataclass
class GenerateArguments:
    """Parameters:
    run_dir: a directory written by ``medsft.train`` (adapter or full model, tokenizer, recipe.yaml).
    prompt: one or more prompts (``--prompt "first" "second"``).
    model_name_or_path: base model, when not the one recorded in the run's recipe.
    load_in_4bit: load the base in 4-bit (the run's quantization settings); default: as the run was trained.
    max_new_tokens / do_sample / temperature / seed: decoding (``temperature``: with ``do_sample`` only,
        0.7 unless given).
    allow_base_mismatch: compare on a base other than the one the run recorded (another name, other weights).
    """

    run_dir: str = field(metadata={"help": "Run directory written by medsft.train."})
    prompt: list[str] = field(default_factory=list, metadata={"help": "One or more prompts."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model (default: the run's)."})
    load_in_4bit: bool | None = field(
        default=None, metadata={"help": "Base in 4-bit (true) or float32 (false); default: as the run was trained."}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens to generate per prompt."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature, with --do_sample true only (default there: 0.7)."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for sampling."})
    allow_base_mismatch: bool = field(
        default=False, metadata={"help": "Use a base model other than the one the run was trained on."}
    )

    def __post_init__(self):
        # checked here, before any model loads (transformers' own checks come after, as tracebacks)
        if self.max_new_tokens < 1:
            raise MedsftError("--max_new_tokens must be at least 1")
        check_seed(self.seed)
        if self.temperature is not None and not self.do_sample:
            raise MedsftError("--temperature applies to sampling only: add --do_sample true, or drop --temperature")
        if self.do_sample:
            self.temperature = 0.7 if self.temperature is None else self.temperature
            if self.temperature <= 0:
                raise MedsftError(f"--temperature must be above 0, got {self.temperature} (greedy: no --do_sample)")
        empty = [i for i, prompt in enumerate(self.prompt, 1) if not prompt.strip()]
        if empty:
            raise MedsftError(f"--prompt {', '.join(map(str, empty))} of {len(self.prompt)} is empty")


@dataclass
class PushArguments:
    """Parameters:
    run_dir: a directory written by ``medsft.train``.
    repo_id: ``owner/name`` on the Hub.
    private: create the repository private.
    merge: publish the base model with the adapter merged in instead of the adapter.
    dry_run: write the folder that would be uploaded to this (new or empty) directory and upload nothing.
    base_model: Hub id of the base model, when the run was trained from a local directory or GGUF file.
    eval_report: evaluation ``report.json`` to publish (default: the newest ``<run_dir>/eval*/report.json``).
    license: the card's licence identifier (default ``other``: the base model's and the data's licences apply).
    commit_message: the Hub commit message.
    allow_base_mismatch: publish although the run's local base model (still at its recorded path) now holds other
        weights than the run was trained on.
    """

    run_dir: str = field(metadata={"help": "Run directory written by medsft.train."})
    repo_id: str = field(default="", metadata={"help": "owner/name on the Hub."})
    private: bool = field(default=False, metadata={"help": "Create a private repository."})
    merge: bool = field(default=False, metadata={"help": "Publish the merged model, not the adapter."})
    dry_run: str | None = field(default=None, metadata={"help": "Write the folder here; upload nothing."})
    base_model: str | None = field(default=None, metadata={"help": "Hub id of the base model (local bases)."})
    eval_report: str | None = field(default=None, metadata={"help": "Evaluation report.json to publish."})
    license: str = field(default="other", metadata={"help": "Licence identifier for the card."})
    commit_message: str = field(default="Upload model trained with medsft", metadata={"help": "Commit message."})
    allow_base_mismatch: bool = field(
        default=False, metadata={"help": "Publish although the local base model now holds other weights."}
    )


@dataclass
class PreviewArguments:
    """Parameters:
    num_examples: how many training examples to show.
    split: ``train`` or ``validation``.
    """

    num_examples: int = field(default=3, metadata={"help": "How many examples to show."})
    split: str = field(default="train", metadata={"help": "Which split to show.", "choices": ["train", "validation"]})

    def __post_init__(self):
        if self.num_examples < 0:
            raise MedsftError(f"--num_examples must be 0 (statistics only) or more, got {self.num_examples}")
