"""Model and tokenizer loading: Hub ids, local directories and GGUF files; full precision or 4-bit (QLoRA).

Shared by training, evaluation and publishing so that all three see the same model the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from trl import get_quantization_config

from medsft.errors import MedsftError, hub_errors
from medsft.hub import looks_local

logger = logging.getLogger(__name__)

# Used only for models that ship no chat template (GPT-2). The assistant turn ends with the EOS token, so the model
# learns to stop; the prompt rendered with add_generation_prompt is a prefix of the full conversation, which TRL needs
# to mask the prompt out of the loss.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Question:\n' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Answer:\n' + message['content'] + eos_token + '\n\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Answer:\n' }}{% endif %}"
)


@dataclass
class ModelSource:
    """Where the weights are read from.

    Parameters:
        path: what ``from_pretrained`` gets (Hub id or local directory; for GGUF, the converted cache directory).
        name: how the model is named in manifests and cards: the Hub id, or the file/directory name of a local model
            (never an absolute local path).
        gguf_sha256: hash of the GGUF file the weights came from, if any.
        fingerprint: for a local directory, a cheap hash of its weights (``weights_fingerprint``), so that other
            weights saved under the same folder name are told apart.
    """

    path: str
    name: str
    gguf_sha256: str | None = None
    fingerprint: str | None = None


def default_cache_dir() -> Path:
    return Path(os.environ.get("MEDSFT_CACHE", Path.home() / ".cache" / "medsft"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_FINGERPRINT_SAMPLE = 1 << 20  # bytes read at the start, middle and end of each weight file


def weights_fingerprint(model_dir: str | Path) -> str:
    """A cheap identity of a local model directory's weights: a hash of ``config.json`` and, for each weight file,
    its name, size and three 1 MiB samples (start, middle, end). Other weights saved under the same folder name
    (a retrained model, another random initialisation) differ in it; a copy of the folder elsewhere does not.
    Reads a few MiB per file, whatever the model's size."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    files = sorted(
        p for p in root.iterdir() if p.name == "config.json" or p.suffix in (".safetensors", ".bin", ".pt", ".pth")
    )
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}\n".encode())
        with open(file, "rb") as f:
            for offset in sorted(
                {0, max(0, size // 2 - _FINGERPRINT_SAMPLE // 2), max(0, size - _FINGERPRINT_SAMPLE)}
            ):
                f.seek(offset)
                digest.update(f.read(_FINGERPRINT_SAMPLE))
    return digest.hexdigest()[:32]


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantize a GGUF file into an ordinary safetensors model directory (model + tokenizer)."""
    logger.info("Dequantizing %s into %s (once; later runs reuse it)", gguf_path.name, target)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # The GGUF quantizer stays attached to the model and makes save_pretrained refuse; the weights are already plain
    # floats at this point, so dropping the quantization config is all that is needed.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary directory and rename, so an interrupted conversion never leaves a half-written cache entry.
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE_GGUF").write_text(gguf_path.name + "\n")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_model_source(model_name_or_path: str | None, gguf_cache_dir: str | None = None) -> ModelSource:
    """Turn ``--model_name_or_path`` (Hub id, local directory or ``.gguf`` file) into a loadable source.

    A GGUF file is dequantized once into ``<cache>/gguf/<sha256 prefix>`` and reused while the file is unchanged.
    Under ``accelerate launch`` only the local main process converts; the others wait and reuse it.
    """
    if not model_name_or_path:
        raise MedsftError("model_name_or_path is required (a Hub id, a local model directory or a .gguf file)")
    path = Path(model_name_or_path).expanduser()
    if model_name_or_path.endswith(".gguf"):
        if not path.is_file():
            raise MedsftError(f"GGUF model file not found: {model_name_or_path}")
        sha = _sha256(path)
        cache = Path(gguf_cache_dir) if gguf_cache_dir else default_cache_dir() / "gguf"
        target = cache / f"{path.stem}-{sha[:16]}"
        with PartialState().local_main_process_first():
            if not (target / "config.json").is_file():
                _convert_gguf(path, target)
        return ModelSource(path=str(target), name=path.name, gguf_sha256=sha)
    if path.exists():
        if not (path / "config.json").is_file():
            raise MedsftError(f"local model directory {model_name_or_path} has no config.json")
        return ModelSource(path=str(path), name=path.resolve().name, fingerprint=weights_fingerprint(path))
    if looks_local(model_name_or_path) and model_name_or_path.count("/") > 0:  # "gpt2" is a Hub id without owner
        raise MedsftError(f"model path not found: {model_name_or_path}")
    return ModelSource(path=model_name_or_path, name=model_name_or_path)


def check_max_length(source: ModelSource, max_length: int | None, revision: str = "main") -> None:
    """Refuse a ``max_length`` beyond the model's position limit before anything is loaded (GPT-2 would fail deep in
    its position embedding, after loading and packing)."""
    if max_length is None:
        return
    from transformers import AutoConfig

    with hub_errors("model config", source.path):
        config = AutoConfig.from_pretrained(source.path, revision=revision)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise MedsftError(
            f"--max_length {max_length} is longer than {source.name}'s {limit} positions: pass --max_length {limit} "
            "or less"
        )


def load_tokenizer(source: ModelSource, revision: str = "main", need_chat_template: bool = False):
    """Load the tokenizer; give it medsft's documented default chat template if it has none and one is needed."""
    with hub_errors("tokenizer", source.path):
        tokenizer = AutoTokenizer.from_pretrained(source.path, revision=revision)
    if need_chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer


def guard_bnb_cpu_4bit(model: torch.nn.Module) -> int:
    """Keep bitsandbytes from repacking 4-bit weights into its CPU bf16 layout.

    On CPU, bitsandbytes (0.50) repacks ``Linear4bit`` weights the first time the layer runs in eval mode (evaluation
    during training, ``generate``); after that its backward is wrong: GPT-2 raises "a view of a leaf Variable..." in
    matmul_4bit, Llama-type models silently get no or tiny gradients. Turning the repacking off on every layer avoids
    it (tests/test_qlora.py checks gradients before and after an eval forward). Returns the number of layers guarded.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def load_model(
    source: ModelSource,
    model_args,
    gradient_checkpointing: bool = False,
    for_training: bool = True,
) -> PreTrainedModel:
    """Load the causal LM, quantized to 4-bit NF4 when ``model_args.load_in_4bit`` (TRL's ``BitsAndBytesConfig``).

    For training a quantized model it is also prepared with peft's ``prepare_model_for_kbit_training``.
    """
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    quantization_config = get_quantization_config(model_args)
    kwargs = {"revision": model_args.model_revision, "dtype": dtype}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        if torch.cuda.is_available():
            # each process keeps its whole quantized model on its own GPU (DDP); TRL 1.x dropped its helper for this
            kwargs["device_map"] = {"": PartialState().local_process_index}
    with hub_errors("model", source.path):
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    if quantization_config is not None:
        guard_bnb_cpu_4bit(model)
        if for_training:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if for_training:
        # A KV cache is useless in training, and with one transformers skips the packed-sequence attention mask.
        model.config.use_cache = False
    return model


def add_special_tokens(tokenizer, tokens: Sequence[str]) -> list[int]:
    """Add ``tokens`` to the tokenizer as (extra) special tokens, never split; returns their ids."""
    tokenizer.add_special_tokens({"extra_special_tokens": list(tokens)}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(list(tokens))


def fit_embeddings(model: PreTrainedModel, vocab_size: int) -> None:
    """Grow the model's (tied) embeddings when the tokenizer has more tokens than the model has rows."""
    if vocab_size > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(vocab_size)


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


def keep_adapter_float32(model: torch.nn.Module) -> None:
    """Undo TRL's bf16 cast of the trainable adapter weights of a 4-bit model.

    peft loads adapters in float32 (on resume, reload and evaluation), so an adapter trained in bf16 changes dtype
    when a run resumes and the resumed run drifts from an uninterrupted one (measured: ~1e-3 on the adapter weights
    after 3 steps). float32 adapters are peft's own default; under bf16 mixed precision autocast computes in bf16.
    """
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()


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


def read_adapter(adapter: str, full_model_ok: bool = False) -> AdapterInfo:
    """Describe a local adapter directory (``medsft.train`` output) or a Hub adapter id; errors say what to do.

    ``full_model_ok``: also describe a full fine-tune's run directory (what its base was, for the base check).
    """
    import json

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
        from medsft.run_dir import check_finished

        check_finished(local)
    if not is_adapter and not (is_model and full_model_ok):
        if is_model:
            raise MedsftError(
                f"{adapter} holds a full model, not a LoRA adapter: evaluate it with --model_name_or_path {adapter}"
            )
        raise MedsftError(f"{adapter} has no adapter_config.json: is it a LoRA adapter directory from medsft.train?")
    resolved = local.resolve()
    name, manifest_file = resolved.name, local / "run_manifest.json"
    if re.fullmatch(r"checkpoint-\d+", name):
        # a Trainer checkpoint: the run's manifest sits one level up
        manifest_file = resolved.parent / "run_manifest.json"
        name = f"{resolved.parent.name}-{name}"
    try:
        config = json.loads((local / "adapter_config.json").read_text()) if is_adapter else {}
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    except json.JSONDecodeError as e:
        raise MedsftError(f"{adapter}: unreadable adapter_config.json or run_manifest.json: {e}") from None
    trained_on = manifest.get("model") or {}
    if trained_on.get("name"):
        return AdapterInfo(
            adapter,
            name,
            trained_on["name"],
            trained_on.get("gguf_sha256"),
            trained_on.get("load_in_4bit"),
            trained_on.get("fingerprint"),
        )
    base = config.get("base_model_name_or_path")
    if base and Path(base).is_absolute():
        base = Path(base).name  # the base is compared by its last component anyway; reports hold no local paths
    return AdapterInfo(adapter, name, base)


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

    from medsft.lora import meta_model

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
