"""Token lengths of formatted examples, as the trainer will tokenize them, and what ``max_length`` cuts off."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl.data_utils import common_prefix_length


def tokenize_for_training(example: dict, tokenizer) -> tuple[list[int], list[bool]]:
    """Token ids and which of them carry loss, the way TRL's ``SFTTrainer`` tokenizes (TRL 1.x ``tokenize_fn``).

    Written out here because TRL keeps it inside the trainer (training's truncation count and the preview both use
    it, so they count the tokens training sees): prompt/completion examples train on the tokens after the
    common prefix of the tokenized prompt and prompt+completion; EOS is appended to non-chat completions and texts;
    a ``text`` example trains on every token.
    """
    eos = tokenizer.eos_token or ""
    if "prompt" in example:
        if isinstance(example["prompt"], list):  # conversational
            prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=True, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=True)
            prompt, full = prompt["input_ids"], full["input_ids"]
        else:
            completion = example["completion"]
            completion = completion if completion.endswith(eos) else completion + eos
            prompt = tokenizer(example["prompt"])["input_ids"]
            full = tokenizer(example["prompt"] + completion)["input_ids"]
        start = common_prefix_length(prompt, full)
        return full, [i >= start for i in range(len(full))]
    if "messages" in example:
        ids = tokenizer.apply_chat_template(example["messages"], tokenize=True)["input_ids"]
        return ids, [True] * len(ids)
    text = example["text"] if example["text"].endswith(eos) else example["text"] + eos
    ids = tokenizer(text)["input_ids"]
    return ids, [True] * len(ids)


def token_lengths(dataset, tokenizer) -> list[int]:
    return [len(tokenize_for_training(example, tokenizer)[0]) for example in dataset]


@dataclass
class Truncation:
    """What truncation to ``max_length`` does to a split (TRL keeps the start of each example).

    Parameters:
        longer: examples longer than ``max_length``.
        completion_lost: indices of examples none of whose loss-carrying tokens survive (the answer is cut away
            entirely: they would train on nothing).
        completion_cut: examples that keep part of their loss-carrying tokens.
    """

    longer: int = 0
    completion_lost: list[int] = field(default_factory=list)
    completion_cut: int = 0


def truncation(dataset, tokenizer, max_length: int | None) -> Truncation:
    """Count, per example, the loss-carrying tokens that survive truncation to ``max_length``."""
    result = Truncation()
    if max_length is None:
        return result
    for i, example in enumerate(dataset):
        ids, trained = tokenize_for_training(example, tokenizer)
        if len(ids) <= max_length:
            continue
        result.longer += 1
        kept = sum(trained[:max_length])
        if kept == 0 and any(trained):
            result.completion_lost.append(i)
        elif kept < sum(trained):
            result.completion_cut += 1
    return result
