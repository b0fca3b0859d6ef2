"""lm-evaluation-harness's ``loglikelihood`` requests for multiple-choice tasks: each choice's summed log-probability
after the question's context, tokenized as the harness tokenizes it, in one forward per question when the choices
allow it (PubMedQA and the letter-choice benchmarks both do)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from accelerate import PartialState

from medsft.evaluation.scoring import (
    PrefixCache,
    make_batches,
    pad_token_id,
    prefix_groups,
    run_sharded,
    shared_context_logprobs,
    token_logprob_sums,
)

logger = logging.getLogger(__name__)


@dataclass
class Request:
    """One question: its context tokens and each choice's continuation tokens."""

    context: list[int]
    choices: list[list[int]]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-evaluation-harness's ``_encode_pair``: trailing spaces move from the context to the continuation, and the
    continuation's tokens are those of ``context + continuation`` after the context's token count."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    return context_ids, whole[len(context_ids) :]


# what warn_truncated said in this evaluation: base and each adapter score the same inputs, one line is enough
_SAID: set[tuple] = set()


def new_evaluation() -> None:
    """Start an evaluation: ``warn_truncated`` says each of its lines again (once)."""
    _SAID.clear()


def warn_truncated(lengths: list[int], max_length: int, what: str) -> int:
    """Say how many inputs are longer than ``max_length`` (their beginnings are cut, as the harness cuts them: nothing
    is cut silently), once per evaluation for the same inputs (not again for each model); returns that number."""
    cut = sum(length > max_length for length in lengths)
    said = (what, cut, len(lengths), max_length, max(lengths, default=0))
    # every process holds every question: one line, not one a process
    if cut and PartialState().is_main_process and said not in _SAID:
        _SAID.add(said)
        logger.warning(
            "%s: %d of %d inputs are longer than max_length=%d tokens (the longest: %d); their first tokens are cut, "
            "as lm-evaluation-harness cuts them; a larger --max_length (up to the model's context) keeps them whole",
            what, cut, len(lengths), max_length, max(lengths),
        )  # fmt: skip
    return cut


def _one_forward(request: Request, max_length: int) -> bool:
    """Whether one forward of context + longest choice scores every choice exactly as one forward per choice would:
    every choice without its last token is a prefix of the longest, and left truncation (if any) cuts the same
    context tokens for every choice."""
    longest = max(request.choices, key=len)
    if any(choice[:-1] != longest[: len(choice) - 1] for choice in request.choices):
        return False
    fits = len(request.context) + len(longest) - 1 <= max_length
    return fits or len({len(choice) for choice in request.choices}) == 1


def score_choices(
    model,
    tokenizer,
    requests: list[Request],
    max_length: int,
    batch_size: int,
    single_forward: bool | None = None,
    what: str = "scoring",
) -> list[list[float]]:
    """The summed log-likelihood of each choice, per question (lm-evaluation-harness's ``loglikelihood``).

    ``single_forward``: None scores each question with one forward when its choices allow it (``_one_forward``:
    single tokens such as A/B/C/D, or PubMedQA's yes / no / may+be after a chat template); False forces one sequence
    per choice (the harness's own way, used by tests and the benchmark as the reference).
    """
    pad_id = pad_token_id(tokenizer)
    warn_truncated([len(r.context) + max(map(len, r.choices)) - 1 for r in requests], max_length, what)
    if single_forward is not False and all(_one_forward(r, max_length) for r in requests):
        # contexts cut as the per-choice path cuts them for the longest choice: (context + choice)[-(max_length + 1):]
        rows = [(r.context[-(max_length + 1 - max(map(len, r.choices))) :], r.choices) for r in requests]
        # questions that begin alike (few-shot exemplars …) share one computation of that beginning
        lengths = [len(context) + max(map(len, choices)) - 1 for context, choices in rows]
        groups = prefix_groups([context for context, _ in rows], batch_size, lengths)
        batches = make_batches(lengths, batch_size, [group for group, _ in groups])
        items = [(row, shared) for row, (_, shared) in zip(rows, groups)]
        prefixes = PrefixCache(model)

        def score(batch):  # a batch is one group's: every row shares the same first ``shared`` tokens
            return shared_context_logprobs(model, [row for row, _ in batch], pad_id, batch[0][1], prefixes)

        return run_sharded(items, batches, score, what)
    # per-choice fallback: (context + choice)[-(max_length + 1):][:-1] as input, the choice's tokens scored
    pieces = []
    for r in requests:
        for choice in r.choices:
            whole = (r.context + choice)[-(max_length + 1) :]
            pieces.append((whole, [i >= len(whole) - len(choice) for i in range(len(whole))]))
    batches = make_batches([len(ids) for ids, _ in pieces], batch_size)
    sums = run_sharded(pieces, batches, lambda rows: token_logprob_sums(model, rows, pad_id), what)
    out, i = [], 0
    for r in requests:
        out.append([logprob for logprob, _ in sums[i : i + len(r.choices)]])
        i += len(r.choices)
    return out
