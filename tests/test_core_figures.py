"""Titles that fit their figures (every medsft plot)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from medsft.core.figures import fitted_title  # noqa: E402

# the suite figure's title for the float32 base and the rank-64 PubMedQA adapter (docs/RESULTS.md, section 3)
SUITE = "medsft evaluation: SmolLM2-135M-Instruct.Q4_1.gguf (float32) vs pubmedqa_lora_smollm2_rationale_r64"


def _title_box(title: str, width: float):
    fig = plt.figure(figsize=(width, 4.6))
    text = fig.suptitle(title, fontsize=9)
    fig.canvas.draw()
    box, figure_width = text.get_window_extent(), fig.bbox.width
    plt.close(fig)
    return box, figure_width


@pytest.mark.parametrize(
    "title, width", [(SUITE, 4.5), (SUITE + ", medquad_smollm2, wikidoc_qlora_smollm2_full", 5.4), ("short", 4.5)]
)
def test_a_long_title_is_wrapped_to_fit_its_figure(title, width):
    box, figure_width = _title_box(fitted_title(title, width, 9), width)
    assert 0 <= box.x0 and box.x1 <= figure_width
    assert fitted_title(title, width, 9).replace("\n", " ") == title  # nothing cut, only wrapped
    if len(title) > 60:
        box, figure_width = _title_box(title, width)
        assert box.x0 < 0 or box.x1 > figure_width  # what the suite's plots looked like before


def test_a_multi_line_title_keeps_its_lines():
    # the confusion matrix's title: model, task, scores — each line wrapped on its own, none merged
    title = f"{SUITE}\nPubMedQA test, n=500\nacc 0.436, macro-F1 0.300 (n=500)"
    wrapped = fitted_title(title, 4.2, 8)
    assert wrapped.split("\n")[-2:] == title.split("\n")[-2:] and wrapped.count("\n") > title.count("\n")
    assert fitted_title("PubMedQA test\nacc 0.436", 4.2, 8) == "PubMedQA test\nacc 0.436"
