"""PubMedQA yes/no/maybe evaluation in three scoring modes.

- ``loglikelihood``: lm-evaluation-harness's ``pubmedqa`` task. Prompt ``"Abstract: " + "\\n".join(CONTEXTS) +
  "\\nQuestion: " + QUESTION + "\\nAnswer:"``, choices ``" yes"``, ``" no"``, ``" maybe"``, tokenized as the
  harness does (context and context+choice encoded separately, no special tokens, contexts cut from the left to the
  model's length); the prediction is the choice with the highest summed log-likelihood. When every choice is one
  token after the shared context (GPT-2, Llama/SmolLM2 tokenizers), one forward pass scores all three.
- ``chat``: the question as the model's chat-template user turn (``pubmedqa.chat_prompt``, the ``chat`` training
  format), choices ``yes``/``no``/``maybe`` as the start of the assistant turn, scored the same way.
- ``generate``: greedy generation after the chat prompt; the first yes/no/maybe word is the answer. Answers with none
  are counted and predicted as ``unparsable`` (wrong, as for the official scorer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medsft.core.errors import MedsftError
from medsft.data.pubmedqa import chat_prompt, lm_eval_prompt
from medsft.evaluation.metrics import LABELS
from medsft.evaluation.scoring import (
    greedy_generate,
    make_batches,
    pad_token_id,
    run_sharded,
    shared_context_logprobs,
    token_logprob_sums,
)

MODES = ("loglikelihood", "chat", "generate")
UNPARSABLE = "unparsable"
_ANSWER = re.compile(r"\b(yes|no|maybe)\b", re.IGNORECASE)


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


def prompt_text(row: dict, mode: str, tokenizer) -> str:
    if mode == "loglikelihood":
        return lm_eval_prompt(row)
    return tokenizer.apply_chat_template(chat_prompt(row), tokenize=False, add_generation_prompt=True)


def build_requests(rows: list[dict], tokenizer, mode: str) -> list[Request]:
    prefix = " " if mode == "loglikelihood" else ""
    requests = []
    for row in rows:
        context = prompt_text(row, mode, tokenizer)
        pairs = [encode_pair(tokenizer, context, prefix + label) for label in LABELS]
        requests.append(Request(pairs[0][0], [cont for _, cont in pairs]))
    return requests


def _truncate(ids: list[int], max_length: int) -> list[int]:
    return ids[-max_length:]


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
    model, tokenizer, requests: list[Request], max_length: int, batch_size: int, single_forward: bool | None = None
) -> list[list[float]]:
    """The summed log-likelihood of each choice, per question (lm-evaluation-harness's ``loglikelihood``).

    ``single_forward``: None scores each question with one forward when its choices allow it (``_one_forward``:
    single tokens, or PubMedQA's yes / no / may+be after a chat template); False forces one sequence per choice (the
    harness's own way, used by tests and the benchmark as the reference).
    """
    pad_id = pad_token_id(tokenizer)
    if single_forward is not False and all(_one_forward(r, max_length) for r in requests):
        # contexts cut as the per-choice path cuts them for the longest choice: (context + choice)[-(max_length + 1):]
        rows = [(r.context[-(max_length + 1 - max(map(len, r.choices))) :], r.choices) for r in requests]
        batches = make_batches([len(context) + max(map(len, choices)) - 1 for context, choices in rows], batch_size)
        return run_sharded(rows, batches, lambda batch: shared_context_logprobs(model, batch, pad_id), "pubmedqa")
    # per-choice fallback: (context + choice)[-(max_length + 1):][:-1] as input, the choice's tokens scored
    pieces = []
    for r in requests:
        for choice in r.choices:
            whole = (r.context + choice)[-(max_length + 1) :]
            pieces.append((whole, [i >= len(whole) - len(choice) for i in range(len(whole))]))
    batches = make_batches([len(ids) for ids, _ in pieces], batch_size)
    sums = run_sharded(pieces, batches, lambda rows: token_logprob_sums(model, rows, pad_id), "pubmedqa")
    n = len(LABELS)
    return [[logprob for logprob, _ in sums[q * n : (q + 1) * n]] for q in range(len(requests))]


def parse_answer(text: str) -> str:
    """The first yes/no/maybe word of a generated answer, or ``unparsable``."""
    match = _ANSWER.search(text)
    return match.group(1).lower() if match else UNPARSABLE


def generate_answers(model, tokenizer, rows: list[dict], max_length: int, batch_size: int, max_new_tokens: int):
    """Greedy answers and the label parsed from each."""
    pad_id = pad_token_id(tokenizer)
    prompts = [
        _truncate(tokenizer.encode(prompt_text(row, "generate", tokenizer), add_special_tokens=False), max_length)
        for row in rows
    ]
    batches = make_batches([len(p) for p in prompts], batch_size)
    outputs = run_sharded(
        prompts,
        batches,
        lambda batch: greedy_generate(model, batch, pad_id, tokenizer.eos_token_id, max_new_tokens),
        "pubmedqa generate",
    )
    texts = [tokenizer.decode(out, skip_special_tokens=True).strip() for out in outputs]
    return [parse_answer(t) for t in texts], texts


def predict(
    model, tokenizer, rows: list[dict], mode: str, max_length: int, batch_size: int, max_new_tokens: int = 16
) -> tuple[list[str], list]:
    """Predicted labels and, per question, the choice log-likelihoods (or the generated text)."""
    if mode not in MODES:
        raise MedsftError(f"unknown PubMedQA mode '{mode}'; choose one of {', '.join(MODES)}")
    if mode == "generate":
        return generate_answers(model, tokenizer, rows, max_length - max_new_tokens, batch_size, max_new_tokens)
    scores = score_choices(model, tokenizer, build_requests(rows, tokenizer, mode), max_length, batch_size)
    return [LABELS[max(range(len(LABELS)), key=s.__getitem__)] for s in scores], scores
