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

import logging
import sys
import tempfile
from pathlib import Path

from medsft.configs import PushArguments, parse_args
from medsft.core.errors import MedsftError, disk_full_errors, run_cli
from medsft.core.paths import is_hub_id
from medsft.data.io import check_writable_dir
from medsft.publishing.folder import build_folder
from medsft.publishing.hub import check_repo_id, check_token, network_errors

logger = logging.getLogger("medsft.push")


def push(args: PushArguments, token: str | None = None) -> dict:
    """Build the folder (in ``--dry_run`` or a temporary directory) and, unless a dry run, upload it.

    ``token`` (kept in memory, never in ``args``): a token given to ``medsft.train --hub_token``; by default the
    usual places."""
    check_repo_id(args.repo_id, "--repo_id")
    if args.base_model and not is_hub_id(args.base_model):
        # it is written into the card, LICENSE.md and adapter_config.json for readers to load: a path is no use there
        raise MedsftError(
            f"--base_model '{args.base_model}' is not a Hub id: give the base model's id on the Hub (e.g. "
            "HuggingFaceTB/SmolLM2-135M-Instruct), not a local path"
        )
    if args.dry_run:
        out = Path(args.dry_run)
        if out.exists() and not out.is_dir():
            raise MedsftError(f"--dry_run {out} is a file: give a new (or empty) directory")
        if out.exists() and any(out.iterdir()):
            raise MedsftError(f"--dry_run directory {out} is not empty; choose a new one")
        check_writable_dir(out, "--dry_run")
        with disk_full_errors(out, f"empty {out} and run the same command again"):
            result = build_folder(args, out)
        logger.info("dry run: wrote %d files to %s; nothing uploaded", len(result["files"]), out)
        return {**result, "uploaded": False, "folder": str(out)}
    token = check_token(token)  # before anything heavy
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    # the folder is built where TMPDIR says, and removed at the end, uploaded or not
    room = "run the same command again (or set TMPDIR to a disk with room); nothing was published"
    with disk_full_errors(tempfile.gettempdir(), room), tempfile.TemporaryDirectory(prefix="medsft-push-") as tmp:
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
        except network_errors() as e:  # the network went away (ConnectError, timeouts)
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
    args, _ = parse_args(
        (PushArguments,), argv, prog="medsft.push", doc=__doc__,
        usage="medsft.push RUN_DIR --repo_id OWNER/NAME [--dry_run FOLDER] [--flag value ...]",
    )  # fmt: skip
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
