"""Token lengths of formatted examples, as the trainer will tokenize them."""

from __future__ import annotations


def render(example: dict, tokenizer) -> str:
    """The full training text of a prompt/completion, messages or text example."""
    if "messages" in example:
        return tokenizer.apply_chat_template(example["messages"], tokenize=False)
    if "prompt" in example:
        if isinstance(example["prompt"], list):  # conversational
            return tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        return example["prompt"] + example["completion"] + (tokenizer.eos_token or "")
    return example["text"] + (tokenizer.eos_token or "")


def token_lengths(dataset, tokenizer) -> list[int]:
    texts = [render(example, tokenizer) for example in dataset]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def count_longer_than(dataset, tokenizer, max_length: int | None) -> int:
    """How many examples exceed ``max_length`` tokens (and so lose their end to truncation)."""
    if max_length is None:
        return 0
    return sum(length > max_length for length in token_lengths(dataset, tokenizer))
