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

from medsft.core.errors import MedsftError
from medsft.data.pubmedqa import LABELS, chat_prompt, lm_eval_prompt
from medsft.evaluation.loglikelihood import Request, encode_pair, score_choices, warn_truncated
from medsft.evaluation.scoring import greedy_generate, make_batches, pad_token_id, run_sharded

MODES = ("loglikelihood", "chat", "generate")
UNPARSABLE = "unparsable"
_ANSWER = re.compile(r"\b(yes|no|maybe)\b", re.IGNORECASE)


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


def parse_answer(text: str) -> str:
    """The first yes/no/maybe word of a generated answer, or ``unparsable``."""
    match = _ANSWER.search(text)
    return match.group(1).lower() if match else UNPARSABLE


def generate_answers(model, tokenizer, rows: list[dict], max_length: int, batch_size: int, max_new_tokens: int):
    """Greedy answers and the label parsed from each."""
    pad_id = pad_token_id(tokenizer)
    encoded = [tokenizer.encode(prompt_text(row, "generate", tokenizer), add_special_tokens=False) for row in rows]
    warn_truncated([len(ids) for ids in encoded], max_length, "pubmedqa generate")
    prompts = [_truncate(ids, max_length) for ids in encoded]
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
        if max_new_tokens >= max_length:
            raise MedsftError(
                f"--max_new_tokens {max_new_tokens} leaves no room for the prompt in max_length={max_length} tokens"
            )
        return generate_answers(model, tokenizer, rows, max_length - max_new_tokens, batch_size, max_new_tokens)
    requests = build_requests(rows, tokenizer, mode)
    scores = score_choices(model, tokenizer, requests, max_length, batch_size, what="pubmedqa")
    return answers(scores, mode), scores


def answers(details: list, mode: str) -> list[str]:
    """The predicted labels from what ``predict`` returned beside them (a report's saved outputs): the highest choice
    log-likelihood (the first on a tie), or the label parsed from the generated text."""
    if mode == "generate":
        return [parse_answer(text) for text in details]
    return [LABELS[max(range(len(LABELS)), key=s.__getitem__)] for s in details]
