"""The folder a run is published as: adapter (or merged model), tokenizer when it differs from the base, the
rerunnable recipe, the evaluation report and plots, the card; checked to hold no local path or token."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import yaml

from medsft.configs import PushArguments
from medsft.core.errors import MedsftError
from medsft.core.paths import looks_local
from medsft.data.io import read_json
from medsft.evaluation.schema import EvalReport
from medsft.publishing.card import build_card
from medsft.publishing.provenance import licence_text, rerunnable_recipe, training_datasets
from medsft.run_dir.loss_curve import LOSS_CURVE_FILE
from medsft.run_dir.record import MANIFEST_FILE, RECIPE_FILE, Run, read_run

logger = logging.getLogger("medsft.push")

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json",
    "merges.txt", "added_tokens.json", "tokenizer.model",
)  # fmt: skip


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:/|~/)(?:[\w.@+-]+/)*[\w.@+-]+")


def scrub_paths(value):
    """A copy of a recipe/report value with local paths replaced by their last component (``../shared/data/x`` →
    ``x``, ``/home/me/runs/y`` → ``y``); Hub ids (``owner/name``) are kept."""
    if isinstance(value, dict):
        return {k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v) for v in value]
    if isinstance(value, str) and value:
        if "/" in value and "://" not in value and looks_local(value.rstrip("/")):
            return Path(value.rstrip("/")).name
        return _ABSOLUTE_PATH.sub(lambda m: Path(m.group(0)).name, value) if "://" not in value else value
    return value


def find_report(run_dir: Path, explicit: str | None) -> Path | None:
    """The evaluation report to publish: the one given, else the newest ``eval*/report.json`` in the run that scored
    it (an evaluation stopped before reaching it, or still running, leaves a newer report without it)."""
    if explicit:
        if not Path(explicit).is_file():
            raise MedsftError(f"evaluation report not found: {explicit}")
        return Path(explicit)
    found = sorted(run_dir.glob("eval*/report.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    name = run_dir.resolve().name
    for path in found:
        report = EvalReport.from_dict(read_json(path, what="evaluation report"))
        if report.results.get(report.label_of(name) or "") is not None:
            return path
    return found[0] if found else None


def _check_scored_as_it_is(run_dir: Path, report_path: Path, report: dict, label: str) -> None:
    """The card's numbers must be those of the files published: a report that scored the run with other weights or
    another ``adapter_config.json`` (retrained, or saved at another ``--adapter_strength`` since) is refused."""
    from medsft.modeling.source import weights_fingerprint

    recorded = ((report.get("adapters") or {}).get(label) or {}).get("fingerprint")
    if not recorded or recorded == weights_fingerprint(run_dir):
        return  # (reports from before adapter fingerprints cannot be checked)
    if recorded == weights_fingerprint(run_dir, adapter_config=False):
        logger.warning(
            "%s is from before 2026-12-06: it fingerprinted %s's weights alone (the same as now), not its "
            "adapter_config.json; if that changed since it was scored (saved at another --adapter_strength), the "
            "card's numbers are not this model's: evaluate it again",
            report_path,
            label,
        )
        return
    raise MedsftError(
        f"{report_path} scored {label} with other weights or another adapter_config.json than {run_dir} holds now "
        "(retrained, or saved at another --adapter_strength, since): its numbers would not be this model's; evaluate "
        "the run again, or pass --eval_report with a report of it as it is"
    )


def _public_base(run: Run, explicit: str | None) -> str:
    if explicit:
        return explicit
    name = run.base.get("name") or run.model_name_or_path or ""
    # a base loaded from local files is recorded by its folder or file name with a fingerprint or GGUF hash: the
    # name alone (e.g. "tiny-gpt2") can look like a canonical Hub id
    local = bool(run.base.get("fingerprint") or run.base.get("gguf_sha256"))
    if not local and not looks_local(name):
        return name
    raise MedsftError(
        f"the run's base model '{Path(name).name}' is a local file or directory: pass --base_model with the Hub id of "
        "the same model (e.g. HuggingFaceTB/SmolLM2-135M-Instruct) so the card and adapter point readers to it"
    )


def _check_local_base(run: Run) -> None:
    """Where the run's local base model is still at its recorded path, it must hold the weights the run was trained
    on (the card and a merge would otherwise describe or use another model)."""
    from medsft.modeling.adapters import check_adapter_base, read_adapter
    from medsft.modeling.source import resolve_model_source

    name = run.model_name_or_path
    if not name or not Path(name).expanduser().exists():
        return
    trained_on = read_adapter(str(run.path), full_model_ok=True)
    if trained_on.base_name:
        check_adapter_base(trained_on, resolve_model_source(name, run.get("gguf_cache_dir")))


def _tokenizer_differs(run: Run) -> bool:
    """Whether the run's tokenizer differs from the base model's (added tokens, a chat template medsft gave it)."""
    from transformers import AutoTokenizer

    from medsft.modeling.source import resolve_model_source

    ours = AutoTokenizer.from_pretrained(run.path)
    try:
        source = resolve_model_source(run.model_name_or_path, run.get("gguf_cache_dir"))
        base = AutoTokenizer.from_pretrained(source.path)
    except (MedsftError, OSError, ValueError):
        logger.info("base tokenizer not available here; publishing the run's tokenizer")
        return True
    return ours.get_vocab() != base.get_vocab() or (ours.chat_template or "") != (base.chat_template or "")


def _merge(run: Run, folder: Path) -> None:
    """Merge the adapter into the base loaded in float32 (also for QLoRA runs) and save the full model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medsft.core.errors import hub_errors
    from medsft.modeling.adapters import load_adapter
    from medsft.modeling.loading import weights_read_not_mapped
    from medsft.modeling.source import resolve_model_source

    source = resolve_model_source(run.model_name_or_path, run.get("gguf_cache_dir"))
    with hub_errors("model", source.name), weights_read_not_mapped():
        base = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    merged = load_adapter(base, str(run.path)).merge_and_unload()
    merged.save_pretrained(folder)
    AutoTokenizer.from_pretrained(run.path).save_pretrained(folder)


def build_folder(args: PushArguments, folder: Path) -> dict:
    """Write the upload folder; return what it holds (for the log and tests)."""
    run = read_run(args.run_dir)
    run_dir = run.path
    if not (run_dir / MANIFEST_FILE).is_file():
        raise MedsftError(f"{run_dir} has no {MANIFEST_FILE}: is it a finished medsft.train run?")
    is_adapter = run.is_adapter
    if is_adapter and not (run_dir / "adapter_model.safetensors").is_file():
        raise MedsftError(f"{run_dir} has adapter_config.json but no adapter_model.safetensors")
    if not is_adapter and not (run_dir / "config.json").is_file():
        raise MedsftError(f"{run_dir} holds neither a LoRA adapter nor a model")
    if args.merge and not is_adapter:
        raise MedsftError(f"{run_dir} is a full fine-tune already; --merge is for LoRA adapters")
    base_model = _public_base(run, args.base_model)
    if not args.allow_base_mismatch:
        _check_local_base(run)
    report_path = find_report(run_dir, args.eval_report)
    report = read_json(report_path, what="evaluation report") if report_path else None
    label = EvalReport.from_dict(report).label_of(run_dir.resolve().name) if report else None
    if report and label is None:
        logger.warning("%s has no results for this run; the card will have no evaluation numbers", report_path)
    elif report and label not in (report.get("results") or {}):
        logger.warning(
            "%s stopped before scoring this run; the card will have no evaluation numbers (medsft.evaluate's command "
            "with --resume true finishes it)",
            report_path,
        )
    elif report:
        _check_scored_as_it_is(run_dir, report_path, report, label)

    folder.mkdir(parents=True, exist_ok=True)
    adapter_config = read_json(run_dir / "adapter_config.json", what="adapter config") if is_adapter else None
    added_tokens = run.added_tokens
    tokenizer_included = True
    if args.merge:
        _merge(run, folder)
    elif is_adapter:
        shutil.copy2(run_dir / "adapter_model.safetensors", folder)
        # the saved config names the local path the base was loaded from; readers need the Hub id
        (folder / "adapter_config.json").write_text(
            json.dumps({**adapter_config, "base_model_name_or_path": base_model}, indent=2) + "\n"
        )
        tokenizer_included = _tokenizer_differs(run)
    else:
        for file in run_dir.iterdir():
            if file.is_file() and (
                file.suffix == ".safetensors" or file.name in ("config.json", "generation_config.json")
            ):
                shutil.copy2(file, folder)
    if tokenizer_included and not args.merge:
        for name in TOKENIZER_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, folder)
    public_recipe, recipe_notes = rerunnable_recipe(run.recipe, base_model)
    (folder / RECIPE_FILE).write_text(
        "# The medsft recipe this model was trained with, rerunnable: accelerate launch -m medsft.train recipe.yaml\n"
        + "".join(f"# {note}\n" for note in recipe_notes)
        + yaml.safe_dump(scrub_paths(public_recipe))
    )
    if args.license == "other":
        (folder / "LICENSE.md").write_text(licence_text(base_model, run.recipe))
    if report:
        (folder / "eval").mkdir(exist_ok=True)
        (folder / "eval/report.json").write_text(json.dumps(scrub_paths(report), indent=2) + "\n")
        for extra in report_path.parent.glob("*"):
            if extra.suffix in (".png",) or "_predictions_" in extra.name:  # every task's predictions file
                shutil.copy2(extra, folder / "eval")
    if (run_dir / LOSS_CURVE_FILE).is_file():
        shutil.copy2(run_dir / LOSS_CURVE_FILE, folder)
    card = build_card(
        repo_id=args.repo_id,
        base_model=base_model,
        run=run.replace(
            recipe=scrub_paths(run.recipe), arguments=scrub_paths(run.arguments), manifest=scrub_paths(run.manifest)
        ),
        adapter_config=adapter_config,
        report=EvalReport.from_dict(scrub_paths(report)) if report else None,
        report_label=label,
        license=args.license,
        merged=args.merge,
        tokenizer_included=tokenizer_included,
        added_tokens=added_tokens,
        plots=tuple(
            str(p.relative_to(folder)) for p in [*folder.glob("*.png"), *sorted((folder / "eval").glob("*.png"))]
        ),
        datasets=training_datasets(run.arguments),
        recipe_notes=tuple(recipe_notes),
    )
    card.save(folder / "README.md")
    check_folder(folder, run_dir)
    return {
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
        "report": report_path is not None,
        "tokenizer_included": tokenizer_included,
    }


def check_folder(folder: Path, run_dir: Path) -> None:
    """Refuse to publish a folder whose text files hold a local absolute path, this user's name or the token."""
    from huggingface_hub import get_token

    secrets = {s for s in (get_token(), os.environ.get("HF_TOKEN")) if s}
    local = {str(Path.home()), str(Path.cwd()), str(run_dir.resolve())}
    for file in folder.rglob("*"):
        if not file.is_file() or file.suffix in (".safetensors", ".png", ".bin", ".model"):
            continue
        text = file.read_text(encoding="utf-8", errors="ignore")
        if any(s in text for s in secrets):
            raise MedsftError(f"{file.name} would publish the Hub token; nothing was uploaded")
        leaked = [p for p in local if p != "/" and p in text]
        if leaked:
            raise MedsftError(f"{file.name} would publish a local path ({len(leaked)} found); nothing was uploaded")
