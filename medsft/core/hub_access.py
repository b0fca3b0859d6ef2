"""Fail fast when the Hugging Face Hub is unreachable.

Without it, a Hub id on a machine without network took 38 s to fail (transformers and datasets retry each request,
printing every connection error twice) and ended in a library traceback. medsft asks the Hub once, with a short
timeout, before the first Hub load of a process, and answers an unreachable Hub with one line: pass local paths, or
set ``HF_HUB_OFFLINE=1`` to use the copies already in the Hugging Face cache.
"""

from __future__ import annotations

import os

from medsft.core.errors import MedsftError

PROBE_TIMEOUT_S = 5.0
_probed: dict[str, str | None] = {}  # endpoint -> None (reachable) or why not


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` set now (the environment) or when huggingface_hub was imported (its constant)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return value in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def unreachable_reason(endpoint: str | None = None) -> str | None:
    """Why the Hub at ``endpoint`` (default: huggingface_hub's, which honours ``HF_ENDPOINT``) cannot be reached, or
    None when it answered. Any HTTP answer counts as reachable (the load itself then says what is wrong); asked
    through huggingface_hub's own HTTP session, so proxies set for it apply. Asked once per endpoint and process."""
    from huggingface_hub import constants, get_session

    endpoint = endpoint or constants.ENDPOINT
    if endpoint not in _probed:
        try:
            get_session().head(endpoint, timeout=PROBE_TIMEOUT_S, follow_redirects=False)
            _probed[endpoint] = None
        except Exception as e:  # any transport failure (DNS, refused, timeout, proxy, TLS) means "unreachable"
            detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
            _probed[endpoint] = f"{type(e).__name__}: {detail}"[:200].rstrip(": ")
    return _probed[endpoint]


def require_hub_for(names) -> None:
    """Check, before any work, that the Hub is reachable when any of ``names`` (models, adapters, datasets; None
    skipped) is a Hub id: a command that loads a local model for a minute must not fail then on a Hub dataset."""
    from medsft.core.paths import is_hub_id

    hub_ids = list(dict.fromkeys(n for n in names if n and is_hub_id(n)))
    if hub_ids:
        # a mistyped local path reads as a Hub id too: say that nothing local has that name
        note = "no local file or folder has that name; " if len(hub_ids) == 1 else "none is a local file or folder; "
        require_hub(", ".join(f"'{n}'" for n in hub_ids), local_note=note)


def require_hub(what: str, local_note: str = "") -> None:
    """Raise one line when ``what`` (e.g. "model config 'gpt2'") must come from the Hub and the Hub cannot be reached.

    In offline mode nothing is asked: the libraries read their cache and fail on their own when it lacks the files.
    """
    if offline_mode():
        return
    from huggingface_hub import constants

    reason = unreachable_reason()
    if reason:
        raise MedsftError(
            f"the Hugging Face Hub is needed for {what} but is unreachable ({constants.ENDPOINT}: {reason}): "
            f"{local_note}pass local paths instead (a model directory or .gguf file, a dataset file or folder), or "
            "set HF_HUB_OFFLINE=1 to use copies already in the Hugging Face cache"
        )
