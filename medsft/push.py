"""Publish a trained run to the Hugging Face Hub: the LoRA adapter (or, with ``--merge``, the merged model), its
model card, the resolved recipe and the evaluation report.

Usage:

```bash
# look first: write exactly the folder that would be uploaded, upload nothing (no token needed)
python -m medsft.push runs/wikidoc_qlora --repo_id my-org/gpt2-wikidoc-qlora --dry_run /tmp/card-check
# publish (token from HF_TOKEN or `hf auth login`)
python -m medsft.push runs/wikidoc_qlora --repo_id my-org/gpt2-wikidoc-qlora --private
# the base model with the adapter merged in (a QLoRA adapter is merged into the 32-bit base, not the 4-bit one)
python -m medsft.push runs/wikidoc_qlora --repo_id my-org/gpt2-wikidoc-merged --merge
# a run trained from a local model or GGUF file: name the Hub model it is the same as
python -m medsft.push runs/pubmedqa_lora_smollm2 --repo_id my-org/smollm2-pubmedqa \\
    --base_model HuggingFaceTB/SmolLM2-135M-Instruct --dry_run out/
# at the end of training
accelerate launch -m medsft.train recipes/x.yaml --push_to_hub --hub_model_id my-org/name
```

The upload goes through ``huggingface_hub`` (``create_repo``, ``upload_folder``). The token is checked before
anything heavy runs and is never printed or written. No file of the folder holds a local absolute path: the recipe
and report name local files and directories by their last component, and the folder is checked before upload.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medsft.card import build_card, licence_text, rerunnable_recipe
from medsft.configs import parse_args
from medsft.errors import MedsftError, run_cli
from medsft.hub import looks_local
from medsft.run_dir import MANIFEST_FILE, RECIPE_FILE, check_finished

logger = logging.getLogger("medsft.push")

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json",
    "merges.txt", "added_tokens.json", "tokenizer.model",
)  # fmt: skip
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:/|~/)(?:[\w.@+-]+/)*[\w.@+-]+")


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


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a lost connection raises: OSError, and the HTTP client's own errors (huggingface_hub 1.x uses httpx2)."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def check_repo_id(repo_id: str, flag: str) -> None:
    """``owner/name`` as the Hub accepts it (huggingface_hub's own validator), checked before anything runs."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not repo_id or repo_id.count("/") != 1:
        raise MedsftError(f"{flag} must be owner/name, got '{repo_id}'")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise MedsftError(f"{flag} '{repo_id}' is not a valid Hub repository id: {str(e).splitlines()[0]}") from None


def scrub_paths(value):
    """A copy of a recipe/report value with local paths replaced by their last component (``../shared/data/x`` →
    ``x``, ``/home/me/runs/y`` → ``y``); Hub ids (``owner/name``) are kept."""
    if isinstance(value, dict):
        return {k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v) for v in value]
    if isinstance(value, str) and value:
        local = value.startswith(("/", "./", "../", "~")) or (value.count("/") > 1 and "://" not in value)
        if local or Path(value).exists() and "/" in value:
            return Path(value.rstrip("/")).name
        return _ABSOLUTE_PATH.sub(lambda m: Path(m.group(0)).name, value) if "://" not in value else value
    return value


def check_token(token: str | None = None) -> str:
    """The Hub token (``token``, else from the usual places: ``HF_TOKEN``, ``hf auth login``), checked against the
    Hub; errors never show it."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = token or get_token()
    if not token:
        raise MedsftError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (or use --dry_run OUT_DIR to build the "
            "folder without uploading)"
        )
    try:
        HfApi().whoami(token=token)
    except OfflineModeIsEnabled:
        raise MedsftError("the Hub cannot be reached (HF_HUB_OFFLINE is set); use --dry_run OUT_DIR") from None
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        if status in (401, 403):
            raise MedsftError("the Hugging Face token was rejected (401/403): log in again or set HF_TOKEN") from None
        raise MedsftError(f"could not check the token with the Hub (HTTP {status})") from None
    except OSError as e:  # no network
        raise MedsftError(f"the Hub cannot be reached ({type(e).__name__}); use --dry_run OUT_DIR") from None
    return token


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MedsftError(f"{path}: unreadable ({e})") from None


def find_report(run_dir: Path, explicit: str | None) -> Path | None:
    """The evaluation report to publish: the one given, else the newest ``eval*/report.json`` in the run."""
    if explicit:
        if not Path(explicit).is_file():
            raise MedsftError(f"evaluation report not found: {explicit}")
        return Path(explicit)
    found = sorted(run_dir.glob("eval*/report.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _report_label(report: dict, run_dir: Path) -> str | None:
    """This run's column in the report: the adapter whose recorded name is the run directory's name."""
    name = run_dir.resolve().name
    for label, adapter in (report.get("adapters") or {}).items():
        if adapter.get("name") == name:
            return label
    return None


def _public_base(manifest: dict, recipe: dict, explicit: str | None) -> str:
    if explicit:
        return explicit
    name = (manifest.get("model") or {}).get("name") or recipe.get("model_name_or_path") or ""
    if not looks_local(name):
        return name
    raise MedsftError(
        f"the run's base model '{Path(name).name}' is a local file or directory: pass --base_model with the Hub id of "
        "the same model (e.g. HuggingFaceTB/SmolLM2-135M-Instruct) so the card and adapter point readers to it"
    )


def _check_local_base(run_dir: Path, recipe: dict) -> None:
    """Where the run's local base model is still at its recorded path, it must hold the weights the run was trained
    on (the card and a merge would otherwise describe or use another model)."""
    from medsft.model import check_adapter_base, read_adapter, resolve_model_source

    name = recipe.get("model_name_or_path")
    if not name or not Path(name).expanduser().exists():
        return
    trained_on = read_adapter(str(run_dir), full_model_ok=True)
    if trained_on.base_name:
        check_adapter_base(trained_on, resolve_model_source(name, recipe.get("gguf_cache_dir")))


def _tokenizer_differs(run_dir: Path, recipe: dict, manifest: dict) -> bool:
    """Whether the run's tokenizer differs from the base model's (added tokens, a chat template medsft gave it)."""
    from transformers import AutoTokenizer

    from medsft.model import resolve_model_source

    ours = AutoTokenizer.from_pretrained(run_dir)
    try:
        source = resolve_model_source(recipe.get("model_name_or_path"), recipe.get("gguf_cache_dir"))
        base = AutoTokenizer.from_pretrained(source.path)
    except (MedsftError, OSError, ValueError):
        logger.info("base tokenizer not available here; publishing the run's tokenizer")
        return True
    return ours.get_vocab() != base.get_vocab() or (ours.chat_template or "") != (base.chat_template or "")


def _merge(run_dir: Path, recipe: dict, folder: Path) -> None:
    """Merge the adapter into the base loaded in float32 (also for QLoRA runs) and save the full model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medsft.errors import hub_errors
    from medsft.model import load_adapter, resolve_model_source

    source = resolve_model_source(recipe.get("model_name_or_path"), recipe.get("gguf_cache_dir"))
    with hub_errors("model", source.name):
        base = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    merged = load_adapter(base, str(run_dir)).merge_and_unload()
    merged.save_pretrained(folder)
    AutoTokenizer.from_pretrained(run_dir).save_pretrained(folder)


def build_folder(args: PushArguments, folder: Path) -> dict:
    """Write the upload folder; return what it holds (for the log and tests)."""
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise MedsftError(f"run directory not found: {run_dir}")
    check_finished(run_dir)
    for required in (RECIPE_FILE, MANIFEST_FILE):
        if not (run_dir / required).is_file():
            raise MedsftError(f"{run_dir} has no {required}: is it a finished medsft.train run?")
    recipe = yaml.safe_load((run_dir / RECIPE_FILE).read_text()) or {}
    manifest = _read_json(run_dir / MANIFEST_FILE)
    is_adapter = (run_dir / "adapter_config.json").is_file()
    if is_adapter and not (run_dir / "adapter_model.safetensors").is_file():
        raise MedsftError(f"{run_dir} has adapter_config.json but no adapter_model.safetensors")
    if not is_adapter and not (run_dir / "config.json").is_file():
        raise MedsftError(f"{run_dir} holds neither a LoRA adapter nor a model")
    if args.merge and not is_adapter:
        raise MedsftError(f"{run_dir} is a full fine-tune already; --merge is for LoRA adapters")
    base_model = _public_base(manifest, recipe, args.base_model)
    if not args.allow_base_mismatch:
        _check_local_base(run_dir, recipe)
    report_path = find_report(run_dir, args.eval_report)
    report = _read_json(report_path) if report_path else None
    label = _report_label(report, run_dir) if report else None
    if report and label is None:
        logger.warning("%s has no results for this run; the card will have no evaluation numbers", report_path)

    folder.mkdir(parents=True, exist_ok=True)
    adapter_config = _read_json(run_dir / "adapter_config.json") if is_adapter else None
    added_tokens = list((manifest.get("dataset") or {}).get("special_tokens") or [])
    tokenizer_included = True
    if args.merge:
        _merge(run_dir, recipe, folder)
    elif is_adapter:
        shutil.copy2(run_dir / "adapter_model.safetensors", folder)
        # the saved config names the local path the base was loaded from; readers need the Hub id
        (folder / "adapter_config.json").write_text(
            json.dumps({**adapter_config, "base_model_name_or_path": base_model}, indent=2) + "\n"
        )
        tokenizer_included = _tokenizer_differs(run_dir, recipe, manifest)
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
    public_recipe, recipe_notes = rerunnable_recipe(recipe, base_model)
    (folder / RECIPE_FILE).write_text(
        "# The medsft recipe this model was trained with, rerunnable: accelerate launch -m medsft.train recipe.yaml\n"
        + "".join(f"# {note}\n" for note in recipe_notes)
        + yaml.safe_dump(scrub_paths(public_recipe))
    )
    if args.license == "other":
        (folder / "LICENSE.md").write_text(licence_text(base_model, recipe))
    if report:
        (folder / "eval").mkdir(exist_ok=True)
        (folder / "eval/report.json").write_text(json.dumps(scrub_paths(report), indent=2) + "\n")
        for extra in report_path.parent.glob("*"):
            if extra.suffix in (".png",) or extra.name.startswith("pubmedqa_predictions_"):
                shutil.copy2(extra, folder / "eval")
    card = build_card(
        repo_id=args.repo_id,
        base_model=base_model,
        recipe=scrub_paths(recipe),
        manifest=scrub_paths(manifest),
        adapter_config=adapter_config,
        report=scrub_paths(report) if report else None,
        report_label=label,
        license=args.license,
        merged=args.merge,
        tokenizer_included=tokenizer_included,
        added_tokens=added_tokens,
        plots=tuple(sorted(str(p.relative_to(folder)) for p in (folder / "eval").glob("*.png"))),
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


def push(args: PushArguments, token: str | None = None) -> dict:
    """Build the folder (in ``--dry_run`` or a temporary directory) and, unless a dry run, upload it.

    ``token`` (kept in memory, never in ``args``): a token given to ``medsft.train --hub_token``; by default the
    usual places."""
    check_repo_id(args.repo_id, "--repo_id")
    if args.dry_run:
        out = Path(args.dry_run)
        if out.exists() and not out.is_dir():
            raise MedsftError(f"--dry_run {out} is a file: give a new (or empty) directory")
        if out.exists() and any(out.iterdir()):
            raise MedsftError(f"--dry_run directory {out} is not empty; choose a new one")
        result = build_folder(args, out)
        logger.info("dry run: wrote %d files to %s; nothing uploaded", len(result["files"]), out)
        return {**result, "uploaded": False, "folder": str(out)}
    token = check_token(token)  # before anything heavy
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory(prefix="medsft-push-") as tmp:
        result = build_folder(args, Path(tmp))
        api = HfApi(token=token)
        try:
            url = api.create_repo(args.repo_id, private=args.private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                folder_path=tmp, repo_id=args.repo_id, repo_type="model", commit_message=args.commit_message
            )
        except HfHubHTTPError as e:
            status = getattr(e.response, "status_code", None)
            raise MedsftError(f"upload to {args.repo_id} failed (HTTP {status}); nothing was published") from None
        except _network_errors() as e:  # the network went away (ConnectError, timeouts)
            created = "the repository exists (it was created or already there), " if "url" in locals() else ""
            raise MedsftError(
                f"upload to {args.repo_id} failed ({type(e).__name__}): {created}no file was committed (an upload is "
                "one commit); run the same command again to retry"
            ) from None
    logger.info("published %d files to %s", len(result["files"]), url)
    return {**result, "uploaded": True, "url": str(url), "commit": str(getattr(commit, "oid", ""))}


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--run_dir", argv[0], *argv[1:]]
    args, _ = parse_args((PushArguments,), argv, prog="medsft.push")
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    result = push(args)
    where = result["folder"] if not result["uploaded"] else result["url"]
    print(f"{'dry run, nothing uploaded' if not result['uploaded'] else 'published'}: {where}")
    for name in result["files"]:
        print(f"  {name}")
    return result


def cli() -> None:
    run_cli(main, "medsft.push")


if __name__ == "__main__":
    cli()
