"""The row shape every multiple-choice benchmark loader returns (MedQA, MedMCQA, MMLU), and its checks.

A row is ``{"id", "question", "options", "answer", "subject"}``: ``id`` is the question's key in the predictions file
(the 0-based row index in the official file as a string, ``SUBJECT/index`` for MMLU), ``options`` the four option
texts in letter order, ``answer`` the 0-based index of the correct one. Rows that cannot be scored (an option
missing or empty, an answer that is not one of the options, an empty question) are counted in the loader's
``LoadReport`` under the reason, never dropped silently.
"""

from __future__ import annotations

from medsft.data.load_report import LoadReport

LETTERS = ("A", "B", "C", "D")


def check_row(row: dict, report: LoadReport) -> dict | None:
    """``row`` when it can be scored; otherwise None, with the reason counted in ``report``."""
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        report.dropped["empty question"] += 1
        return None
    options = row.get("options")
    if not isinstance(options, list) or len(options) != len(LETTERS):
        report.dropped["not four options"] += 1
        return None
    if any(not isinstance(o, str) or not o.strip() for o in options):
        report.dropped["missing or empty option"] += 1
        return None
    answer = row.get("answer")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(LETTERS):
        report.dropped["answer not among the options"] += 1
        return None
    return row


def keep_valid(rows: list[dict], report: LoadReport) -> list[dict]:
    """The scorable rows of ``rows`` (``report.read`` counts them all)."""
    report.read += len(rows)
    return [row for row in rows if check_row(row, report) is not None]


def letter_index(value) -> int | None:
    """``"A"``…``"D"`` (any case, surrounding spaces) → 0…3; anything else None (counted by ``check_row``)."""
    if isinstance(value, str) and value.strip().upper() in LETTERS:
        return LETTERS.index(value.strip().upper())
    return None


def options_block(options: list[str]) -> str:
    """``"A. …\\nB. …\\nC. …\\nD. …\\n"``, the option lines every harness prompt uses."""
    return "".join(f"{letter}. {option}\n" for letter, option in zip(LETTERS, options))


def chat_prompt(question_text: str) -> list[dict]:
    """The ``chat`` mode's user turn: the harness's prompt text without its trailing ``Answer:`` cue, followed by an
    instruction (the letter is then scored as the start of the assistant's answer)."""
    body = question_text.removesuffix("Answer:").rstrip()
    return [{"role": "user", "content": f"{body}\n\nAnswer with the letter of the correct option."}]
