"""Library messages that are known to be harmless where medsft triggers them, filtered (only those) so that the
messages that matter are seen. Each filter says why its message does not apply."""

from __future__ import annotations

import logging
import warnings


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def silence_at_import() -> None:
    # bitsandbytes 0.50 tries, at import on CPUs with AVX512-BF16, to fetch an optional faster CPU kernel from the
    # Hub's kernels-community through the `kernels` package, and logs this when it is absent; it then uses its own
    # CPU kernel, which is what medsft tests and measures with.
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
        _DropMessages("Failed to load CPU gemm_4bit_forward from kernels-community")
    )
    # ... and with HF_HUB_OFFLINE=1, `kernels` (0.19, a transformers 5.25 dependency) first says it skips that
    # kernel's publisher check: the same optional kernel, the same fallback.
    logging.getLogger("kernels._internals.hf_hub").addFilter(
        _DropMessages("Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'")
    )
    # DeepSpeed (0.19, when installed: transformers imports it for every Trainer) says on each machine without a GPU
    # that it uses the CPU, which is right there; on a machine with GPUs it does not say it.
    logging.getLogger("DeepSpeed").addFilter(_DropMessages("Setting accelerator to CPU."))
    # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` property when it wraps a model, and its
    # prepare_model_for_kbit_training (QLoRA) calls the deprecated `gradient_checkpointing_enable` (transformers 5.24
    # renamed both to activation_checkpointing*); they do the same thing, the names are peft's to update.
    for old in ("is_gradient_checkpointing", "gradient_checkpointing_enable"):
        warnings.filterwarnings("ignore", message=f"`{old}` is deprecated", category=FutureWarning)


def silence_packed_attention_mask_notice() -> None:
    """For padding-free packed training: the rows are not padded (examples are separated by ``position_ids``), but a
    packed row ends with EOS, which is GPT-2's pad id, so transformers asks for an attention mask it must not get."""
    logging.getLogger("transformers.modeling_utils").addFilter(
        _DropMessages("We strongly recommend passing in an `attention_mask`")
    )
