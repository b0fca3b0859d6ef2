"""Perplexity over held-out medical text: the texts, the sliding window, and the metrics.

What is scored is what training puts the loss on (``data.lengths.tokenize_for_training``): every token of a
``text`` example, the answer of a ``chat`` or ``instruction`` example (given its question as context). So the
perplexity of a chat-format validation split is ``exp`` of the token-weighted validation loss of the training run.
Texts longer than ``max_length`` are scored by a sliding window with a ``stride`` (transformers' perplexity guide):
each token is scored once, with at least ``max_length - stride`` tokens of context after the first window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import evaluate

from medsft.core.errors import MedsftError
from medsft.data.io import read_records
from medsft.data.lengths import tokenize_for_training
from medsft.data.registry import SPECS, dataset_type_for, load_splits
from medsft.evaluation.metrics import BitsPerByte, Perplexity
from medsft.evaluation.scoring import make_batches, pad_token_id, run_sharded, token_logprob_sums


@dataclass
class ScoredText:
    """One text as token ids and the positions whose log-likelihood counts."""

    ids: list[int]
    scored: list[bool]


def _read_text_file(path: Path) -> list[dict]:
    """A .txt file: one text per blank-line-separated paragraph. A .jsonl/.json file: rows in a TRL format."""
    if path.suffix == ".txt":
        paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n")]
        return [{"text": p} for p in paragraphs if p]
    rows = read_records(path)  # JSON list or JSONL, errors naming the file and line
    for i, row in enumerate(rows):
        if not ({"text", "messages"} & set(row) or {"prompt", "completion"} <= set(row)):
            raise MedsftError(f"{path}: row {i} has no 'text', 'messages' or 'prompt'/'completion' field")
    return rows


def load_texts(dataset: str, dataset_type: str, split: str, fmt: str, extra: dict | None = None) -> tuple[list, str]:
    """The formatted examples to score, and the format used.

    Parameters:
        dataset: a dataset medsft knows (Hub id or local path, as for training) or a local .txt/.jsonl/.json file.
        dataset_type: as ``--dataset_type`` in training (``auto`` recognises the known ones).
        split: ``validation`` (the split training held out) or ``train``.
        fmt: ``auto`` (``chat`` when the dataset has it, else ``text``), ``chat``, ``instruction`` or ``text``.
        extra: further dataset options (``data.registry.DatasetOptions``, e.g. ``pubmedqa_test_file``).
    """
    path = Path(dataset)
    generic = path.suffix in (".txt", ".jsonl", ".json")
    if generic and not path.is_file():
        raise MedsftError(f"perplexity data file not found: {dataset}")
    try:
        kind = dataset_type_for(dataset, dataset_type)
    except MedsftError:
        if not generic:
            raise
        kind = "hf"
    if kind == "hf":
        if not generic:
            raise MedsftError("perplexity needs a dataset medsft knows or a local .txt/.jsonl/.json file")
        return _read_text_file(path), "file"
    formats = SPECS[kind].formatters
    if fmt == "auto":
        fmt = "chat" if "chat" in formats else "text"
    if fmt not in formats or fmt == "special_tokens":
        choices = ", ".join(f for f in formats if f != "special_tokens")
        raise MedsftError(f"{kind} has no '{fmt}' format for perplexity; choose one of {choices}")
    splits = load_splits(dataset, kind, fmt, decontamination="off", **(extra or {})).splits
    if split not in splits:
        raise MedsftError(f"{dataset} has no '{split}' split here (it has {', '.join(splits)})")
    return list(splits[split]), fmt


def windows(text: ScoredText, max_length: int, stride: int) -> list[ScoredText]:
    """Cut a long text into windows of at most ``max_length`` tokens, ``stride`` apart; each window scores only the
    tokens the previous windows did not (so every scored token counts once)."""
    n = len(text.ids)
    if n <= max_length:
        return [text]
    out, previous_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        scored = [text.scored[i] and i >= max(previous_end, begin + 1) for i in range(begin, end)]
        out.append(ScoredText(text.ids[begin:end], scored))
        previous_end = end
        if end == n:
            break
    return out


def scored_bytes(text: ScoredText, tokenizer) -> int:
    """UTF-8 bytes of the scored tokens' text (special tokens such as EOS count zero bytes)."""
    total, run = 0, []
    for token, scored in zip([*text.ids, None], [*text.scored, False]):
        if scored:
            run.append(token)
        elif run:
            total += len(tokenizer.decode(run, skip_special_tokens=True).encode("utf-8"))
            run = []
    return total


def prepare(examples: list[dict], tokenizer) -> list[ScoredText]:
    texts = []
    for example in examples:
        ids, scored = tokenize_for_training(example, tokenizer)
        texts.append(ScoredText(ids, [s and i > 0 for i, s in enumerate(scored)]))
    return texts


def evaluate_perplexity(
    model, tokenizer, texts: list[ScoredText], max_length: int, stride: int, batch_size: int
) -> dict:
    """Token-weighted perplexity, mean NLL, tokens scored and bits per byte over ``texts``."""
    if not 0 < stride < max_length:
        raise MedsftError(f"stride must be between 1 and max_length - 1 ({max_length - 1}), got {stride}")
    pieces, owner = [], []
    for t, text in enumerate(texts):
        for piece in windows(text, max_length, stride):
            pieces.append((piece.ids, piece.scored))
            owner.append(t)
    pad_id = pad_token_id(tokenizer)
    batches = make_batches([len(ids) for ids, _ in pieces], batch_size)
    results = run_sharded(pieces, batches, lambda rows: token_logprob_sums(model, rows, pad_id), "perplexity")
    nll, tokens = [0.0] * len(texts), [0] * len(texts)
    for t, (logprob, count) in zip(owner, results):
        nll[t] -= logprob
        tokens[t] += count
    metric = evaluate.combine([Perplexity(), BitsPerByte()])
    metric.add_batch(nll=nll, tokens=tokens, bytes=[scored_bytes(text, tokenizer) for text in texts])
    result = metric.compute()
    result["windows"] = len(pieces)
    return result
