"""The evaluation report's schema: ``report.json`` as typed dataclasses.

``medsft.evaluate`` builds an ``EvalReport``; ``evaluation/report.py`` (table, plots), the model card and ``bench/``
read one with ``EvalReport.from_dict``, so no reader spells the JSON keys itself. ``to_dict`` writes the JSON layout
medsft has always written (absent results are left out, not written as null); ``from_dict`` accepts reports of
earlier medsft versions, which lack some fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# fields left out of the JSON when None (a task or comparison that did not run), instead of written as null
_OMIT_NONE = {"omit_none": True}


def _fields(cls, data: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in (data or {}).items() if k in names}


def _to_dict(value) -> Any:
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _to_dict(item)
        return out
    if isinstance(value, dict):
        return {k: _to_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_dict(v) for v in value]
    return value


@dataclass
class PairedComparison:
    """An adapter against the base on the same questions: accuracy difference with its paired bootstrap 95% interval,
    answers fixed and broken, and McNemar's exact test."""

    accuracy_difference: float
    difference_ci95: list[float]
    fixed: int
    broken: int
    changed_answers: int
    mcnemar_p: float

    @classmethod
    def from_dict(cls, data: dict | None) -> PairedComparison | None:
        return cls(**_fields(cls, data)) if data else None


@dataclass
class MajorityBaseline:
    label: str
    accuracy: float


@dataclass
class PubMedQAResult:
    """One model's PubMedQA scores (``metrics.PubMedQAScores`` plus the ranking AUC, unparsable answers, and the
    paired comparison with the base)."""

    accuracy: float
    macro_f1: float
    accuracy_ci95: list[float]
    n: int
    prediction_distribution: dict[str, int]
    confusion_matrix: dict
    majority_baseline: MajorityBaseline
    yes_no_auc: float | None = field(default=None, metadata=_OMIT_NONE)  # choice-scoring modes
    unparsable: int | None = field(default=None, metadata=_OMIT_NONE)  # generate mode
    vs_base: PairedComparison | None = field(default=None, metadata=_OMIT_NONE)  # adapters

    @classmethod
    def from_dict(cls, data: dict | None) -> PubMedQAResult | None:
        if not data:
            return None
        values = _fields(cls, data)
        values["majority_baseline"] = MajorityBaseline(**_fields(MajorityBaseline, data["majority_baseline"]))
        values["vs_base"] = PairedComparison.from_dict(data.get("vs_base"))
        return cls(**values)


@dataclass
class PerplexityResult:
    """Token-weighted perplexity over the loss-carrying tokens, with bits per byte."""

    perplexity: float
    mean_nll: float
    tokens: int
    texts: int
    bits_per_byte: float
    bytes: int
    windows: int | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> PerplexityResult | None:
        return cls(**_fields(cls, data)) if data else None


@dataclass
class SubjectResult:
    accuracy: float
    n: int


@dataclass
class MultipleChoiceResult:
    """One model's scores on a letter-choice benchmark (MedQA, MedMCQA, MMLU): ``task_multiple_choice.scores`` plus
    the paired comparison with the base. For MMLU, ``accuracy`` is the micro average over all questions,
    ``macro_accuracy`` the mean of the subjects'."""

    accuracy: float
    acc_norm: float
    accuracy_ci95: list[float]
    n: int
    prediction_distribution: dict[str, int]
    answer_distribution: dict[str, int]
    subjects: dict[str, SubjectResult] | None = field(default=None, metadata=_OMIT_NONE)
    macro_accuracy: float | None = field(default=None, metadata=_OMIT_NONE)
    vs_base: PairedComparison | None = field(default=None, metadata=_OMIT_NONE)
    # the answer-letter prior apart from the questions (None in reports from before 2026-12-06): the accuracy a guesser
    # with the model's letter frequencies reaches, the accuracy with each letter's mean score removed (per subject)
    # and its paired comparison with the base, and the per-letter ranking AUC (0.5 = chance)
    prior_chance: float | None = field(default=None, metadata=_OMIT_NONE)
    centred_accuracy: float | None = field(default=None, metadata=_OMIT_NONE)
    centred_accuracy_ci95: list[float] | None = field(default=None, metadata=_OMIT_NONE)
    letter_auc: float | None = field(default=None, metadata=_OMIT_NONE)
    centred_vs_base: PairedComparison | None = field(default=None, metadata=_OMIT_NONE)

    @classmethod
    def from_dict(cls, data: dict | None) -> MultipleChoiceResult | None:
        if not data:
            return None
        values = _fields(cls, data)
        if data.get("subjects"):
            values["subjects"] = {k: SubjectResult(**_fields(SubjectResult, v)) for k, v in data["subjects"].items()}
        values["vs_base"] = PairedComparison.from_dict(data.get("vs_base"))
        values["centred_vs_base"] = PairedComparison.from_dict(data.get("centred_vs_base"))
        return cls(**values)


CHOICE_TASKS = ("medqa", "medmcqa", "mmlu")  # the ModelResults / EvalSettings fields holding them


@dataclass
class ModelResults:
    """Every task's result for one model (a column of the report)."""

    perplexity: PerplexityResult | None = field(default=None, metadata=_OMIT_NONE)
    pubmedqa: PubMedQAResult | None = field(default=None, metadata=_OMIT_NONE)
    medqa: MultipleChoiceResult | None = field(default=None, metadata=_OMIT_NONE)
    medmcqa: MultipleChoiceResult | None = field(default=None, metadata=_OMIT_NONE)
    mmlu: MultipleChoiceResult | None = field(default=None, metadata=_OMIT_NONE)

    @classmethod
    def from_dict(cls, data: dict) -> ModelResults:
        return cls(
            PerplexityResult.from_dict(data.get("perplexity")),
            PubMedQAResult.from_dict(data.get("pubmedqa")),
            *(MultipleChoiceResult.from_dict(data.get(task)) for task in CHOICE_TASKS),
        )

    def accuracy_tasks(self) -> dict[str, PubMedQAResult | MultipleChoiceResult]:
        """The tasks scored by accuracy that this model has, in report order."""
        return {t: getattr(self, t) for t in ("pubmedqa", *CHOICE_TASKS) if getattr(self, t) is not None}


def _subset(scored: int | None, available: int | None) -> tuple[int, int] | None:
    return (scored, available) if scored is not None and available is not None and scored < available else None


@dataclass
class PerplexitySettings:
    dataset: str
    hub_id: str | None
    split: str
    format: str
    stride: int | None
    texts: int
    texts_in_split: int | None = None

    @property
    def subset(self) -> tuple[int, int] | None:
        """``(scored, in split)`` when ``--limit`` scored only part of the split."""
        return _subset(self.texts, self.texts_in_split)


@dataclass
class PubMedQASettings:
    dataset: str
    split: str
    mode: str
    questions: int
    questions_in_split: int | None = None

    @property
    def subset(self) -> tuple[int, int] | None:
        """``(scored, in split)`` when ``--limit`` scored only part of the split."""
        return _subset(self.questions, self.questions_in_split)


@dataclass
class MultipleChoiceSettings:
    dataset: str
    hub_id: str | None
    split: str
    mode: str
    num_fewshot: int
    harness_task: str
    questions: int
    questions_in_split: int | None = None
    dropped: dict[str, int] = field(default_factory=dict)  # unscorable rows of the split, by reason
    subjects: list[str] | None = field(default=None, metadata=_OMIT_NONE)

    @property
    def subset(self) -> tuple[int, int] | None:
        """``(scored, in split)`` when ``--limit`` scored only part of the split."""
        return _subset(self.questions, self.questions_in_split)


@dataclass
class EvalSettings:
    tasks: list[str]
    max_length: int | None
    batch_size: int
    limit: int | None
    seed: int
    perplexity: PerplexitySettings | None = None
    pubmedqa: PubMedQASettings | None = None
    medqa: MultipleChoiceSettings | None = field(default=None, metadata=_OMIT_NONE)
    medmcqa: MultipleChoiceSettings | None = field(default=None, metadata=_OMIT_NONE)
    mmlu: MultipleChoiceSettings | None = field(default=None, metadata=_OMIT_NONE)
    # adapters scored merged into the (float32) base; None in reports from before the option or without adapters
    adapters_merged: bool | None = field(default=None, metadata=_OMIT_NONE)

    @classmethod
    def from_dict(cls, data: dict | None) -> EvalSettings:
        data = data or {}
        values = {"tasks": [], "max_length": None, "batch_size": 0, "limit": None, "seed": 0, **_fields(cls, data)}
        perplexity, pubmedqa = data.get("perplexity"), data.get("pubmedqa")
        values["perplexity"] = PerplexitySettings(**_fields(PerplexitySettings, perplexity)) if perplexity else None
        values["pubmedqa"] = PubMedQASettings(**_fields(PubMedQASettings, pubmedqa)) if pubmedqa else None
        for task in CHOICE_TASKS:
            given = data.get(task)
            values[task] = MultipleChoiceSettings(**_fields(MultipleChoiceSettings, given)) if given else None
        return cls(**values)


@dataclass
class EvalReport:
    """``report.json``: what was evaluated, how, on what, and every model's results.

    Parameters:
        model: the base model (``name``, ``gguf_sha256``, ``fingerprint``, ``load_in_4bit``).
        adapters: each adapter's column label -> what ``read_adapter`` recorded (``path``, ``name``, base ...).
        results: column label (``base``, then each adapter) -> its results.
        timings: column label -> task -> seconds and throughput.
        incomplete: set when a model failed or was not reached (``model``, ``error``; while the evaluation runs, the
            report written after each model says so); the models before it are in ``results``.
        pubmedqa_outputs: column label -> PMID -> that question's choice log-likelihoods (or generated text).
        choice_outputs: task -> column label -> question id -> the four letters' log-likelihoods (MedQA, MedMCQA,
            MMLU), so a report can be rescored or recalibrated without the model.
        resumed: when ``--resume`` finished an interrupted evaluation, the earlier commands' own record (``models``
            they scored, ``created``, ``finished``, ``medsft_git_commit``, ``versions``, ``hardware``,
            ``world_size``), oldest first; the top-level fields describe the command that finished the report.
    """

    created: str
    finished: str
    medsft_git_commit: str | None
    versions: dict
    hardware: dict
    world_size: int
    model: dict
    adapters: dict[str, dict]
    settings: EvalSettings
    results: dict[str, ModelResults]
    timings: dict[str, dict] = field(default_factory=dict)
    incomplete: dict | None = None
    pubmedqa_outputs: dict[str, dict] | None = field(default=None, metadata=_OMIT_NONE)
    choice_outputs: dict[str, dict[str, dict]] | None = field(default=None, metadata=_OMIT_NONE)
    resumed: list[dict] | None = field(default=None, metadata=_OMIT_NONE)

    def to_dict(self) -> dict:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EvalReport:
        values = {
            "created": "", "finished": "", "medsft_git_commit": None, "versions": {}, "hardware": {},
            "world_size": 1, "model": {}, "adapters": {}, **_fields(cls, data),
        }  # fmt: skip
        values["settings"] = EvalSettings.from_dict(data.get("settings"))
        values["results"] = {label: ModelResults.from_dict(r) for label, r in (data.get("results") or {}).items()}
        return cls(**values)

    def label_of(self, run_name: str) -> str | None:
        """The column of the adapter whose recorded name is ``run_name`` (a run directory's name)."""
        return next((label for label, a in self.adapters.items() if a.get("name") == run_name), None)
