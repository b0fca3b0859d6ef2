"""LoRA adapters to evaluate, compare or publish: what base each was trained on, checks that it fits the base given,
and loading it onto that base."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedModel

from medsft.core.errors import MedsftError, hub_errors
from medsft.core.paths import looks_local
from medsft.data.io import read_json
from medsft.modeling.loading import fit_embeddings
from medsft.modeling.source import ModelSource, weights_fingerprint
from medsft.run_dir.record import RECIPE_FILE, check_finished, read_manifest, read_run

logger = logging.getLogger(__name__)


def load_adapter(base: PreTrainedModel, adapter_dir: str, is_trainable: bool = False):
    """Attach a saved LoRA adapter (local directory or Hub id) to its base model.

    When the adapter was trained with added tokens, its saved tokenizer is longer than the base vocabulary: the base
    embeddings are grown first, and the adapter's trained token rows (``trainable_token_indices``) fill them in.
    """
    from peft import PeftModel

    local = Path(adapter_dir)
    if (local / "tokenizer_config.json").is_file():
        fit_embeddings(base, len(AutoTokenizer.from_pretrained(local)))
    return PeftModel.from_pretrained(base, adapter_dir, is_trainable=is_trainable)


@dataclass
class AdapterInfo:
    """A LoRA adapter to evaluate or publish, and the base model it was trained on (from its run manifest when it
    has one, else from ``adapter_config.json``)."""

    path: str
    name: str
    base_name: str | None
    base_gguf_sha256: str | None = None
    load_in_4bit: bool | None = None
    base_fingerprint: str | None = None
    bnb_4bit_quant_type: str | None = None  # the run's 4-bit settings, for evaluating on the base it was trained on
    use_bnb_nested_quant: bool | None = None
    full_model: bool = False  # a full fine-tune's run directory: the whole model, not an adapter on the base
    fine_tuned_from: str | None = None  # a second-stage full fine-tune: the run given beside it that it started from
    fingerprint: str | None = None  # a local adapter's (or full fine-tune's) weights: a resumed report checks it


def read_adapter(adapter: str, full_model_ok: bool = False) -> AdapterInfo:
    """Describe a local adapter directory (``medsft.train`` output) or a Hub adapter id; errors say what to do.

    ``full_model_ok``: also describe a full fine-tune's run directory (what its base was, for the base check).
    """

    local = Path(adapter)
    if not local.exists():
        if looks_local(adapter):
            raise MedsftError(f"adapter not found: {adapter}")
        from peft import PeftConfig

        with hub_errors("adapter", adapter):
            config = PeftConfig.from_pretrained(adapter)
        return AdapterInfo(adapter, adapter.replace("/", "__"), config.base_model_name_or_path)
    is_adapter, is_model = (local / "adapter_config.json").is_file(), (local / "config.json").is_file()
    if not re.fullmatch(r"checkpoint-\d+", local.resolve().name):
        check_finished(local)
    if not is_adapter and not (is_model and full_model_ok):
        if is_model:
            raise MedsftError(
                f"{adapter} holds a full model, not a LoRA adapter: evaluate it with --model_name_or_path {adapter}"
            )
        raise MedsftError(f"{adapter} has no adapter_config.json: is it a LoRA adapter directory from medsft.train?")
    resolved = local.resolve()
    name, run_dir = resolved.name, local
    if re.fullmatch(r"checkpoint-\d+", name):
        # a Trainer checkpoint: the run's manifest sits one level up
        run_dir = resolved.parent
        name = f"{resolved.parent.name}-{name}"
    config = read_json(local / "adapter_config.json", what="adapter config") if is_adapter else {}
    run = read_run(run_dir, require_finished=False) if (run_dir / RECIPE_FILE).is_file() else None
    trained_on = run.base if run else (read_manifest(run_dir) or {}).get("model") or {}
    if trained_on.get("name"):
        return AdapterInfo(
            adapter,
            name,
            trained_on["name"],
            trained_on.get("gguf_sha256"),
            run.load_in_4bit if run else trained_on.get("load_in_4bit"),
            trained_on.get("fingerprint"),
            run.get("bnb_4bit_quant_type") if run else None,
            run.get("use_bnb_nested_quant") if run else None,
            full_model=not is_adapter,
            fingerprint=weights_fingerprint(local),
        )
    base = config.get("base_model_name_or_path")
    if base and Path(base).is_absolute():
        base = Path(base).name  # the base is compared by its last component anyway; reports hold no local paths
    return AdapterInfo(adapter, name, base, full_model=not is_adapter, fingerprint=weights_fingerprint(local))


def base_precision(load_in_4bit: bool, quant_type: str | None, nested: bool | None, dtype: str | None) -> str:
    """How the base model is held, for the outputs of ``evaluate`` and ``generate`` ("4-bit NF4, nested", "float32").

    The rule both follow: an adapter is run on the base it was trained on (a QLoRA adapter on the 4-bit base, a LoRA
    adapter on the full-precision one) unless ``--load_in_4bit`` says otherwise. At 135M parameters NF4 alone moves
    WikiDoc perplexity from 16.9 to 21.8, so the other base would be another model.
    """
    if load_in_4bit:
        return f"4-bit {(quant_type or 'nf4').upper()}" + (", nested" if nested else "")
    return dtype or "float32"


def check_adapter_base(adapter: AdapterInfo, source: ModelSource) -> None:
    """Refuse an adapter whose recorded base model is not ``source``.

    A GGUF base is compared by file hash, a local directory by its weights' fingerprint (when the run recorded one:
    the same folder name with other weights is refused, the same weights under another name accepted); otherwise by
    Hub id or directory name (the last path component of the recorded path, since the run may have moved).
    """
    recorded = (adapter.base_name or "").rstrip("/")
    given = f"the base model given is '{source.name}'"
    if adapter.base_gguf_sha256:
        same = adapter.base_gguf_sha256 == source.gguf_sha256
    elif source.gguf_sha256:
        # no manifest (a checkpoint of an unfinished run): the recorded base is the dequantized cache directory,
        # named <file stem>-<sha256 prefix> by resolve_model_source, so its name still identifies the GGUF file
        same = Path(recorded).name == Path(source.path).name
    elif adapter.base_fingerprint and source.fingerprint:
        same = adapter.base_fingerprint == source.fingerprint
        given = (
            f"the base model given, '{source.name}' at {source.path}, holds other weights (fingerprint "
            f"{source.fingerprint[:12]}, "
            f"recorded {adapter.base_fingerprint[:12]})"
        )
    else:
        same = recorded in (source.name, source.path) or Path(recorded).name == Path(source.name).name
    if not same:
        raise MedsftError(
            f"adapter {adapter.path} was trained on base model '{adapter.base_name}', but {given}: pass "
            "--model_name_or_path for the base it was trained on (or --allow_base_mismatch true if they are the same "
            "weights under another name)"
        )


def check_adapter_loads(adapter: AdapterInfo, source: ModelSource, revision: str = "main") -> None:
    """Load ``adapter`` onto a weightless (meta-device) copy of the base: its config and weights must load and every
    tensor's shape must match the base's layers. Instant, so every adapter is checked before any model is evaluated.
    """
    import warnings

    from peft import PeftModel

    from medsft.modeling.lora import meta_model

    if not Path(adapter.path).is_dir():
        return  # a Hub adapter: peft reads it when the evaluation reaches it
    base = meta_model(source.path, revision)
    local = Path(adapter.path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. peft's fan_in_fan_out note for a 4-bit GPT-2 adapter on Conv1D
            if (local / "tokenizer_config.json").is_file():
                fit_embeddings(base, len(AutoTokenizer.from_pretrained(local)))
            PeftModel.from_pretrained(base, adapter.path, low_cpu_mem_usage=True)
    except Exception as e:  # noqa: BLE001 - any failure here is the adapter's, reported in one line
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        reason = next((line for line in lines if "size mismatch" in line), lines[0] if lines else type(e).__name__)
        raise MedsftError(f"adapter {adapter.path} does not load onto {source.name}: {reason[:300]}") from None
