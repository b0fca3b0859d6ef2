"""``medsft.evaluate --resume true``: finish an evaluation that stopped (a failed model, Ctrl-C, a kill, the end of a
machine's session) without scoring again the models that finished.

``report.json`` is rewritten after each model, so a stopped command leaves every finished model in it, with the
answers the paired comparisons need. Resuming reads that report, checks that it is the same evaluation (the base
model's weights, each adapter's path and weights, the tasks, their questions and every scoring setting), keeps its
finished models and scores the rest; the finished report lists the earlier commands under ``resumed``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medsft.core.errors import MedsftError
from medsft.data.io import read_json
from medsft.evaluation import task_multiple_choice as mc
from medsft.evaluation import task_pubmedqa as pqa
from medsft.evaluation.report import REPORT_FILE
from medsft.evaluation.schema import EvalReport

logger = logging.getLogger("medsft.evaluate")

RESUME_HINT = "continue with the same command and --resume true"


def resume_dir(output_dir: str | None, default: Path) -> Path:
    """The report folder to resume: ``--output_dir``, else the newest of the default folder and its numbered
    siblings (``eval``, ``eval-2`` …) that holds a report."""
    if output_dir:
        found = [Path(output_dir)]
    else:
        found, n = [], 1
        while (candidate := default if n == 1 else default.with_name(f"{default.name}-{n}")).exists():
            found.append(candidate)
            n += 1
    held = [out for out in found if (out / REPORT_FILE).is_file()]
    if not held:
        where = output_dir or f"{default} (the default report folder; pass --output_dir to name another)"
        raise MedsftError(
            f"--resume true, but {where} holds no {REPORT_FILE}: nothing to resume (a report is written once the "
            "first model is scored); run without --resume"
        )
    return held[-1]


def read_report(out: Path) -> EvalReport:
    data = read_json(out / REPORT_FILE, what="evaluation report")
    try:
        return EvalReport.from_dict(data)
    except (TypeError, ValueError, AttributeError) as e:
        raise MedsftError(f"{out / REPORT_FILE}: not a medsft evaluation report ({e}); cannot resume it") from None


def reuse(previous: EvalReport, out: Path, data, pubmedqa_mode: str, done) -> None:
    """Fill ``done`` (an empty ``runner.Evaluation``) with the report's finished models: results, timings and the
    per-question answers (the paired comparisons are computed again from them), after checking that they answer
    this command's questions, in the same order."""
    pmids = [r["pmid"] for r in data.rows]
    for label, results in previous.results.items():
        if data.rows:
            details = _saved_answers(previous.pubmedqa_outputs, label, pmids, "PubMedQA", out)
            done.outputs[label] = {"predicted": pqa.answers(details, pubmedqa_mode), "details": details}
        for task, benchmark in data.benchmarks.items():
            saved = (previous.choice_outputs or {}).get(task)
            details = _saved_answers(saved, label, [r["id"] for r in benchmark.rows], mc.TITLES[task], out)
            done.choice_outputs.setdefault(task, {})[label] = {"predicted": mc.letters(details), "details": details}
        done.results[label] = results
        done.timings[label] = previous.timings.get(label, {})
    done.max_length = previous.settings.max_length
    done.adapters_merged = previous.settings.adapters_merged


def check_same(previous: EvalReport, current: EvalReport, out: Path) -> None:
    """Refuse to mix two evaluations in one report: the base model, the adapters (labels, paths, weights) and every
    setting must be what the report recorded."""
    differences = _differences("the base model", current.model, previous.model)
    refingerprinted = False  # an adapter's files differ from those the report scored
    if list(current.adapters) != list(previous.adapters):
        differences.append(
            f"the adapters: {', '.join(current.adapters) or 'none'} here, {', '.join(previous.adapters) or 'none'} "
            "in the report"
        )
    else:
        for label, adapter in current.adapters.items():
            differences += _differences(f"adapter {label}", adapter, previous.adapters[label])
            refingerprinted |= adapter.get("fingerprint") != previous.adapters[label].get("fingerprint")
    differences += _differences("settings", current.to_dict()["settings"], previous.to_dict()["settings"])
    if differences:
        why = (
            " (an adapter's weights or adapter_config.json differ from those scored: retrained, or saved at another "
            "--adapter_strength; reports from before 2026-12-06 fingerprinted the weights alone)"
            if refingerprinted
            else ""
        )
        raise MedsftError(
            f"--resume true: {out / REPORT_FILE} is another evaluation ({'; '.join(differences[:4])}){why}; resume "
            "it with the command that wrote it, or evaluate into a new --output_dir"
        )


def earlier_commands(previous: EvalReport, current: EvalReport) -> list[dict]:
    """The ``resumed`` record of the finished report: each earlier command and the models it scored; a warning when
    the code or libraries changed in between (the report keeps both, so a reader sees it too)."""
    parts = list(previous.resumed or [])
    before = {model for part in parts for model in part.get("models", [])}
    scored = [label for label in previous.results if label not in before]
    if scored:  # a resumed command that failed again before scoring anything adds nothing to the record
        parts.append({
            "models": scored, "created": previous.created, "finished": previous.finished,
            "medsft_git_commit": previous.medsft_git_commit, "versions": previous.versions,
            "hardware": previous.hardware, "world_size": previous.world_size,
        })  # fmt: skip
    changed = [
        f"{name} {previous.versions.get(name)} then, {version} now"
        for name, version in current.versions.items()
        if previous.versions.get(name) != version
    ]
    if previous.medsft_git_commit != current.medsft_git_commit:
        changed.append(f"medsft {previous.medsft_git_commit} then, {current.medsft_git_commit} now")
    if changed:
        logger.warning(
            "the finished models were scored with other code (%s): the report records both (resumed)",
            "; ".join(changed),
        )
    return parts


def _saved_answers(saved: dict | None, label: str, ids: list[str], task: str, out: Path) -> list:
    answers = (saved or {}).get(label)
    if answers is None:
        raise MedsftError(
            f"--resume true: {out / REPORT_FILE} has no {task} answers for {label}, which this command scores; "
            "resume with the command that wrote it, or evaluate into a new --output_dir"
        )
    if list(answers) != ids:
        raise MedsftError(
            f"--resume true: {label}'s {task} questions in {out / REPORT_FILE} are not this command's ({len(answers)} "
            f"there, {len(ids)} here, or another order): the data or --limit changed; evaluate into a new --output_dir"
        )
    return [answers[i] for i in ids]


def _differences(what: str, here: dict, there: dict, prefix: str = "") -> list[str]:
    """``what: key X here, Y in the report`` for each leaf that differs (nested dicts flattened to ``a.b``)."""
    found = []
    for key in list(dict.fromkeys([*here, *there])):
        mine, theirs = here.get(key), there.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            found += _differences(what, mine, theirs, f"{prefix}{key}.")
        elif mine != theirs:
            found.append(f"{what}: {prefix}{key} {_short(mine)} here, {_short(theirs)} in the report")
    return found


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
