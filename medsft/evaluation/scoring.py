"""Batched log-likelihood scoring and greedy generation, sharded across processes.

Written by hand because neither transformers nor accelerate score arbitrary token positions of many short texts:
``Trainer.evaluate`` returns one mean loss, and lm-evaluation-harness is an application, not a library dependency
(tests/test_evaluate.py checks agreement with it).

Work is cut into batches *before* sharding (examples sorted by length, longest first, so a batch wastes little on
padding), and whole batches go round-robin to the processes. Every batch is then computed with the same shapes
whatever the number of processes, so a 2-process run gives bit-identical numbers to a 1-process run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from rich.progress import track

T = TypeVar("T")
R = TypeVar("R")


# The model being scored, named in the progress bars ("base (SmolLM2-135M-Instruct.Q4_1.gguf) · PubMedQA")
_model_name: ContextVar[str | None] = ContextVar("model_name", default=None)


@contextmanager
def scoring_model(name: str) -> Iterator[None]:
    """Name ``name`` in every progress bar shown inside the block."""
    token = _model_name.set(name)
    try:
        yield
    finally:
        _model_name.reset(token)


def make_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (ties keep input order)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def run_sharded(items: Sequence[T], batches: list[list[int]], fn: Callable[[list[T]], list[R]], what: str) -> list[R]:
    """Apply ``fn`` to each batch of ``items`` (this process's share of the batches), gather every process's results
    and return them in the order of ``items``. Progress is shown on the main process only."""
    state = PartialState()
    mine = range(state.process_index, len(batches), state.num_processes)
    done = [
        (b, fn([items[i] for i in batches[b]]))
        for b in track(mine, description=_describe(what), disable=not state.is_main_process, transient=True)
    ]
    if state.num_processes > 1:
        done = gather_object(done)
    results: dict[int, R] = {}
    for b, batch_results in done:
        results.update(zip(batches[b], batch_results, strict=True))
    return [results[i] for i in range(len(items))]


def _describe(what: str) -> str:
    name = _model_name.get()
    return f"{name} · {what}" if name else what


def pad_token_id(tokenizer) -> int:
    """The id batches are padded with (masked out, so any id works): the pad token, else EOS (GPT-2 has no pad)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _pad(rows: Sequence[Sequence[int]], pad_id: int, device, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def _logits(model, rows: Sequence[Sequence[int]], first_needed: int, pad_id: int) -> tuple[torch.Tensor, int]:
    """Logits at positions ``first_needed`` … end of the (right-padded) batch.

    Returns the logits (batch, kept positions, vocab) and the position the first kept column stands for. Only the
    needed positions go through the LM head (``logits_to_keep``): for a 3-way answer that is one position, not 500.
    """
    ids, mask = _pad(rows, pad_id, model.device)
    keep = ids.shape[1] - first_needed
    return model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits, first_needed


def token_logprob_sums(model, rows: Sequence[tuple[list[int], list[bool]]], pad_id: int) -> list[tuple[float, int]]:
    """For each ``(ids, scored)``: the summed log-probability of the tokens ``ids[i]`` with ``scored[i]`` (each given
    ``ids[:i]``) and how many were scored. ``scored[0]`` must be False (nothing predicts the first token)."""
    starts = [next((i for i, s in enumerate(scored) if s), len(ids)) for ids, scored in rows]
    first = max(min(starts) - 1, 0)
    logits, offset = _logits(model, [ids for ids, _ in rows], first, pad_id)
    out = []
    for b, (ids, scored) in enumerate(rows):
        if scored and scored[0]:
            raise ValueError("the first token of a row cannot be scored")
        positions = [i for i, s in enumerate(scored) if s]
        if not positions:
            out.append((0.0, 0))
            continue
        targets = torch.tensor([ids[i] for i in positions], device=logits.device)
        columns = torch.tensor([i - 1 - offset for i in positions], device=logits.device)
        selected = logits[b, columns].float()  # log-softmax of the scored rows only, not of the whole batch
        values = selected.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(selected, dim=-1)
        out.append((float(values.double().sum()), len(positions)))
    return out


def shared_context_logprobs(
    model, rows: Sequence[tuple[list[int], list[list[int]]]], pad_id: int
) -> list[list[float]]:
    """For each ``(context, choices)``: each choice's summed log-probability, from ONE forward of the context followed
    by the longest choice (without its last token).

    Valid when every choice without its last token is a prefix of the longest choice (single-token choices always
    are; "yes" / "no" / "may"+"be" too): every choice token is then predicted at a position of that one sequence,
    so the other choices' scores are read off the same logits instead of costing a forward each.
    """
    inputs = [context + max(choices, key=len)[:-1] for context, choices in rows]
    logits, offset = _logits(model, inputs, min(len(context) for context, _ in rows) - 1, pad_id)
    out = []
    for b, (context, choices) in enumerate(rows):
        start = len(context) - 1 - offset
        logprobs = torch.log_softmax(logits[b, start : start + max(len(c) for c in choices)].float(), dim=-1).double()
        out.append([float(sum(logprobs[k, token] for k, token in enumerate(choice))) for choice in choices])
    return out


@torch.no_grad()
def greedy_generate(model, rows: Sequence[list[int]], pad_id: int, eos_id: int | None, max_new_tokens: int):
    """Greedy continuations (new token ids) of left-padded prompts."""
    ids, mask = _pad(rows, pad_id, model.device, left=True)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
    )
    return [row[ids.shape[1] :].tolist() for row in out]
