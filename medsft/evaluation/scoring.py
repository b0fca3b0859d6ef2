"""Batched log-likelihood scoring and greedy generation, sharded across processes.

Written by hand because neither transformers nor accelerate score arbitrary token positions of many short texts:
``Trainer.evaluate`` returns one mean loss, and lm-evaluation-harness is an application, not a library dependency
(tests/test_evaluate.py checks agreement with it).

Work is cut into batches *before* sharding (examples sorted by length, longest first, so a batch wastes little on
padding), and whole batches go round-robin to the processes. Every batch is then computed with the same shapes
whatever the number of processes, so a 2-process run gives bit-identical numbers to a 1-process run.

Questions that begin with the same tokens (MMLU's description line and few-shot exemplars, a chat template's system
turn) are batched together and that prefix is computed once, its key/value cache reused for every batch of the group
(``prefix_groups``, ``PrefixCache``). The harness recomputes it for every question; for 5-shot MMLU it is most of the
prompt. The numbers agree with the full forward to float rounding (tests/test_evaluation_scoring.py).
"""

from __future__ import annotations

import copy
import itertools
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


# A shared prefix shorter than this is not worth a forward and a cache of its own
MIN_SHARED_PREFIX = 8


def make_batches(lengths: Sequence[int], batch_size: int, groups: Sequence[int] | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (ties keep input order). With ``groups`` (one
    id per index), a batch never mixes groups: the batches of one group come one after another."""
    group = (lambda i: groups[i]) if groups is not None else (lambda i: 0)
    order = sorted(range(len(lengths)), key=lambda i: (group(i), -lengths[i], i))
    batches = []
    for _, members in itertools.groupby(order, key=group):
        members = list(members)
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    return batches


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _batched_positions(lengths: Sequence[int], batch_size: int, shared: int = 0) -> int:
    """Positions computed for rows of these lengths in ``make_batches``' batches, ``shared`` of them once."""
    batches = make_batches(lengths, batch_size)  # longest first: a batch is as wide as its first row
    return shared + sum(len(batch) * (lengths[batch[0]] - shared) for batch in batches)


def prefix_groups(
    contexts: Sequence[Sequence[int]],
    batch_size: int,
    lengths: Sequence[int] | None = None,
    min_length: int = MIN_SHARED_PREFIX,
) -> list[tuple[int, int]]:
    """For each context, ``(group, shared)``: the contexts of one group all begin with the same ``shared`` tokens;
    ``(-1, 0)`` for a context in no group.

    Sorted as token sequences, contexts with a common prefix lie side by side, so groups are runs of that order; the
    runs are chosen to save the most positions (a group of n sharing s tokens saves (n - 1) * s), so a question that
    begins like another subject's few-shot prompt does not shrink that subject's prefix to a few tokens. A context's
    last token is never shared: its logits score the choices. A group is kept only if its own batches (``lengths``:
    the rows' lengths, default the contexts') compute fewer positions than its rows hold: a few shared words do not
    pay for the padding of batching questions of very different lengths together, a few-shot prompt does.
    """
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    limits = [len(contexts[i]) - 1 for i in order]
    adjacent = [_common_length(contexts[a], contexts[b]) for a, b in itertools.pairwise(order)]
    # best[j]: the most positions saved by grouping the first j contexts of the order; start[j]: where the last
    # group of that best grouping starts
    best, start = [0] * (len(order) + 1), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        best[j], start[j] = best[j - 1], j - 1
        shared = limits[j - 1]
        for i in range(j - 2, -1, -1):  # the last group = order[i:j]
            shared = min(shared, limits[i], adjacent[i])
            if shared < min_length:
                break
            if best[i] + (j - i - 1) * shared > best[j]:
                best[j], start[j] = best[i] + (j - i - 1) * shared, i
    lengths = lengths if lengths is not None else [len(c) for c in contexts]
    result = [(-1, 0)] * len(contexts)
    j = len(order)
    while j:
        i = start[j]
        members = order[i:j]
        shared = min(limits[i:j] + adjacent[i : j - 1])
        rows = [lengths[k] for k in members]
        if len(members) > 1 and _batched_positions(rows, batch_size, shared) < sum(rows):
            for k in members:
                result[k] = (i, shared)
        j = i
    return result


class PrefixCache:
    """The key/value cache of the last shared prefix computed. A group's batches come one after another (also in each
    process's round-robin share), so one entry computes each prefix once per process."""

    def __init__(self, model):
        self.model = model
        self.tokens: list[int] | None = None
        self.cache = None
        self.argument = "cache"  # the forward's name for it

    @torch.no_grad()
    def expanded(self, tokens: list[int], batch: int):
        """A fresh cache of ``tokens`` for a batch of ``batch`` rows (the forward that uses it appends to it), or None
        for a model that returns no cache that can be repeated (its rows are then computed whole)."""
        if tokens != self.tokens:
            ids = torch.tensor([tokens], dtype=torch.long, device=self.model.device)
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            # transformers 5.25 renamed past_key_values to cache (the old name warns, and goes in 5.40)
            self.argument = "cache" if "cache" in out else "past_key_values"
            self.cache = out.get(self.argument)
            self.tokens = list(tokens)
        if not hasattr(self.cache, "batch_repeat_interleave"):
            return None
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(batch)
        return cache


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
def _logits(
    model, rows: Sequence[Sequence[int]], first_needed: int, pad_id: int, shared: int = 0, prefixes=None
) -> tuple[torch.Tensor, int]:
    """Logits at positions ``first_needed`` … end of the (right-padded) batch.

    Returns the logits (batch, kept positions, vocab) and the position the first kept column stands for. Only the
    needed positions go through the LM head (``logits_to_keep``): for a 3-way answer that is one position, not 500.
    With ``shared``, every row begins with the same ``shared`` tokens (at most ``first_needed``): their key/value
    cache comes from ``prefixes`` (a ``PrefixCache``) and only the rest of each row is computed.
    """
    cache = prefixes.expanded(list(rows[0][:shared]), len(rows)) if shared else None
    if cache is None:
        ids, mask = _pad(rows, pad_id, model.device)
        keep = ids.shape[1] - first_needed
        return model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits, first_needed
    ids, mask = _pad([row[shared:] for row in rows], pad_id, model.device)
    mask = torch.cat([mask.new_ones(len(rows), shared), mask], dim=1)
    keep = ids.shape[1] - (first_needed - shared)
    cached = {prefixes.argument: cache}
    out = model(input_ids=ids, attention_mask=mask, **cached, use_cache=True, logits_to_keep=keep)
    return out.logits, first_needed


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
    model, rows: Sequence[tuple[list[int], list[list[int]]]], pad_id: int, shared: int = 0, prefixes=None
) -> list[list[float]]:
    """For each ``(context, choices)``: each choice's summed log-probability, from ONE forward of the context followed
    by the longest choice (without its last token).

    Valid when every choice without its last token is a prefix of the longest choice (single-token choices always
    are; "yes" / "no" / "may"+"be" too): every choice token is then predicted at a position of that one sequence,
    so the other choices' scores are read off the same logits instead of costing a forward each. ``shared`` /
    ``prefixes``: the contexts' common first tokens, computed once (``_logits``).
    """
    inputs = [context + max(choices, key=len)[:-1] for context, choices in rows]
    first = min(len(context) for context, _ in rows) - 1
    logits, offset = _logits(model, inputs, first, pad_id, shared, prefixes)
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
