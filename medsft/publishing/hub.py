"""The Hub side of publishing: repository ids and tokens checked before anything runs, and the one-commit upload."""

from __future__ import annotations

import logging

from medsft.core.errors import MedsftError

logger = logging.getLogger("medsft.push")


def network_errors() -> tuple[type[BaseException], ...]:
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
