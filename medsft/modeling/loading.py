"""Loading the model and tokenizer the same way for training, evaluation, generation and publishing: full precision
or 4-bit (QLoRA), with the chat template and added tokens medsft gives them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from trl import get_quantization_config

from medsft.core.errors import hub_errors
from medsft.modeling.source import ModelSource

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
    it (tests/test_modeling_loading.py checks gradients before and after an eval forward). Returns the number of
    layers guarded.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


@contextlib.contextmanager
def weights_read_not_mapped() -> Iterator[None]:
    """While a model loads, let transformers read ``.safetensors`` files with safetensors' ``pread`` backend.

    Why: transformers (5.x) opens every weight file with the ``mmap`` backend on Linux and closes it only when the
    whole model is loaded, so every page of the file it has read counts in the process's resident memory until then
    — on top of what the weights become (quantized, or cast to float32). For a 1.1B model saved in bfloat16 loaded
    in NF4 that was a 4.08 GiB peak RSS for a 1.80 GiB anonymous peak; read with ``pread`` (each tensor read into
    memory of its own, freed once placed) it was 2.14 GiB (bench/qlora_memory.py). The weights are the same bytes
    (tests/test_modeling_loading.py). transformers itself uses this backend on Windows and MPS.
    """
    from transformers import modeling_utils

    mapped = getattr(modeling_utils, "safe_open", None)
    if mapped is None:  # a transformers that no longer opens files there: nothing to change
        yield
        return

    def safe_open(filename, framework, device="cpu", backend=None):
        return mapped(filename, framework, device=device, backend="pread")

    modeling_utils.safe_open = safe_open
    try:
        yield
    finally:
        modeling_utils.safe_open = mapped


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
    with hub_errors("model", source.path), weights_read_not_mapped():
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


def keep_adapter_float32(model: torch.nn.Module) -> None:
    """Undo TRL's bf16 cast of the trainable adapter weights of a 4-bit model.

    peft loads adapters in float32 (on resume, reload and evaluation), so an adapter trained in bf16 changes dtype
    when a run resumes and the resumed run drifts from an uninterrupted one (measured: ~1e-3 on the adapter weights
    after 3 steps). float32 adapters are peft's own default; under bf16 mixed precision autocast computes in bf16.
    """
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
