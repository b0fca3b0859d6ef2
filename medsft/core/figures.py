"""What every medsft plot shares: titles that fit their figure (run, model and adapter names are long)."""

from __future__ import annotations

import textwrap


def fitted_title(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` wrapped, line by line, into lines that fit a figure ``width_inches`` wide at ``fontsize`` points.

    A base model's and an adapter's names overflowed the suite's comparison figure, and a run's name, model and data
    the loss curve's, cutting their titles off at the edges. Plots also save with ``bbox_inches="tight"``, so a line
    this estimate gets wrong is still drawn whole.
    """
    per_line = max(20, int(width_inches * 72 / (0.62 * fontsize)))  # ~0.62 em per character in the default font
    return "\n".join(textwrap.fill(line, per_line) for line in text.split("\n"))
