"""QLoRA's frozen embeddings and LM head kept in the 16 bits their checkpoint stored, computed in float32.

bitsandbytes quantizes only the linear layers of the blocks; the embeddings and the LM head stay in the compute dtype,
float32 in medsft's CPU QLoRA recipes (peft's ``prepare_model_for_kbit_training`` also casts them to float32). For a
model whose vocabulary is large against its size that is a good part of QLoRA's memory: TinyLlama-1.1B's shape with a
50k vocabulary has 0.77 GiB of float32 embedding and LM head beside 0.45 GiB of NF4 weights.

Frozen, these matrices only ever hold their checkpoint's values. When the checkpoint is bfloat16 or float16 (most Hub
models) every float32 value is exactly a 16-bit one, so storing the 16 bits and widening at use is the same
computation at half the memory: the embedding's output is widened to float32 (exact), and the LM head multiplies the
float32 hidden states by its weight widened chunk by chunk (never a whole float32 copy), as TRL's fused LM head
already does for its own tiles. Results equal the float32 model's up to float32 summation order
(tests/test_modeling_frozen_16bit.py). A matrix that is not exactly 16-bit (e.g. dequantized GGUF weights) stays
float32.
"""

from __future__ import annotations

import types

import torch

# Rows of the LM head widened to float32 at a time: 8,192 x 2,048 is 64 MiB, against 0.38 GiB for a 50k vocabulary
HEAD_CHUNK_ROWS = 8192


def _exact_16bit_dtype(weight: torch.Tensor) -> torch.dtype | None:
    """bfloat16 or float16 if every value of the float32 ``weight`` is exactly one of that dtype, else None."""
    if weight.dtype != torch.float32:
        return None
    for dtype in (torch.bfloat16, torch.float16):
        if all(
            torch.equal(rows.to(dtype).float(), rows) for rows in weight.detach().split(HEAD_CHUNK_ROWS)
        ):  # a chunk at a time: no whole-matrix temporary
            return dtype
    return None


class _WidenedLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` with a frozen 16-bit ``weight`` widened to ``x``'s dtype a chunk of rows at a time.

    The backward recomputes the widening instead of keeping float32 copies for it; ``weight`` gets no gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        flat = x.reshape(-1, x.shape[-1])
        out = flat.new_empty(flat.shape[0], weight.shape[0])
        for start in range(0, weight.shape[0], HEAD_CHUNK_ROWS):
            rows = weight[start : start + HEAD_CHUNK_ROWS]
            out[:, start : start + rows.shape[0]] = flat @ rows.to(flat.dtype).t()
        if bias is not None:
            out += bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        flat = grad.reshape(-1, grad.shape[-1])
        grad_x = flat.new_zeros(flat.shape[0], weight.shape[1])
        for start in range(0, weight.shape[0], HEAD_CHUNK_ROWS):
            rows = weight[start : start + HEAD_CHUNK_ROWS]
            grad_x += flat[:, start : start + rows.shape[0]] @ rows.to(flat.dtype)
        return grad_x.reshape(*grad.shape[:-1], weight.shape[1]), None, None


def _widened_head_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return _WidenedLinear.apply(x, self.weight, self.bias)


def _widen_output(module: torch.nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def store_frozen_embeddings_16bit(model: torch.nn.Module) -> tuple[int, str]:
    """Keep ``model``'s frozen float32 embeddings and linear LM head in the exact 16-bit dtype of their values.

    Only matrices that receive no gradient and whose every value is exactly bfloat16 (or float16) are changed; the
    model's forward and backward give the float32 results as before. Call it after the last change to the embeddings
    (resizing, peft wrappers that train rows of them) and only when nothing trains them.

    Returns:
        The bytes saved and a description of what was changed (for the run log).
    """
    saved, changed, seen = 0, [], set()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embeddings = [m for m in model.modules() if type(m) is torch.nn.Embedding]
    for module in [*embeddings, *([head] if type(head) is torch.nn.Linear else [])]:
        weight = module.weight
        if weight.requires_grad:
            continue
        if id(weight) not in seen:  # a tied head's weight was converted with the embedding: only its forward is left
            dtype = _exact_16bit_dtype(weight)
            if dtype is None:
                continue
            seen.add(id(weight))
            saved += weight.numel() * (weight.element_size() - dtype.itemsize)
            weight.data = weight.data.to(dtype)
        if module is head:
            module.forward = types.MethodType(_widened_head_forward, module)
        else:
            module.register_forward_hook(_widen_output)
        name = next(n for n, m in model.named_modules() if m is module).removeprefix("base_model.model.")  # peft's
        changed.append(f"{name} ({str(weight.dtype).removeprefix('torch.')})")
    return saved, ", ".join(changed)
