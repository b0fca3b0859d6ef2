"""Where a model's weights come from: a Hub id, a local directory (with a fingerprint of its weights) or a GGUF
file (dequantized once into a cache), and the checks that need only its config."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer

from medsft.core.errors import MedsftError, hub_errors
from medsft.core.paths import looks_local

logger = logging.getLogger(__name__)


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


def default_gguf_cache_dir() -> Path:
    """Where GGUF files are dequantized when no ``--gguf_cache_dir`` is given."""
    return default_cache_dir() / "gguf"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_FINGERPRINT_SAMPLE = 1 << 20  # bytes read at the start, middle and end of each weight file


def weights_fingerprint(model_dir: str | Path, adapter_config: bool = True) -> str:
    """A cheap identity of a local model or adapter directory: a hash of ``config.json`` / ``adapter_config.json``
    and, for each weight file, its name, size and three 1 MiB samples (start, middle, end). Other weights saved under
    the same folder name (a retrained model, another random initialisation) differ in it, and so does an adapter
    whose config scales the same weights otherwise (``lora_alpha``: another ``--adapter_strength``); a copy of the
    folder elsewhere does not. Reads a few MiB per file, whatever the model's size.

    ``adapter_config=False``: the fingerprint medsft recorded before 2026-12-06, without ``adapter_config.json``
    (to recognise the weights an older evaluation report scored)."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    configs = ("config.json", "adapter_config.json") if adapter_config else ("config.json",)
    files = sorted(
        p for p in root.iterdir() if p.name in configs or p.suffix in (".safetensors", ".bin", ".pt", ".pth")
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
        cache = Path(gguf_cache_dir) if gguf_cache_dir else default_gguf_cache_dir()
        target = cache / f"{path.stem}-{sha[:16]}"
        with PartialState().local_main_process_first():
            if not (target / "config.json").is_file():
                _convert_gguf(path, target)
        return ModelSource(path=str(target), name=path.name, gguf_sha256=sha)
    if path.exists():
        if not (path / "config.json").is_file():
            raise MedsftError(f"local model directory {model_name_or_path} has no config.json")
        return ModelSource(path=str(path), name=path.resolve().name, fingerprint=weights_fingerprint(path))
    if looks_local(model_name_or_path):
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
