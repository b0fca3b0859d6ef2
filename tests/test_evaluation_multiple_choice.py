"""medsft.evaluation.task_multiple_choice: MedQA, MedMCQA and MMLU scored exactly as lm-evaluation-harness's own
tasks score them (the harness run here on the same questions), in one forward per question, and their statistics."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from medsft.core.errors import MedsftError
from medsft.data import mmlu
from medsft.data.multiple_choice import chat_prompt
from medsft.evaluation import task_multiple_choice as mc
from medsft.evaluation.loglikelihood import score_choices
from medsft.modeling.loading import load_tokenizer
from medsft.modeling.source import resolve_model_source
from tests.conftest import MEDQA_DIR, MMLU_DIR
from tests.test_data_medmcqa import record, write_release


def _load(path: str, chat: bool = False):
    tokenizer = load_tokenizer(resolve_model_source(path), need_chat_template=chat)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), tokenizer


@pytest.fixture(scope="module")
def medmcqa_release(tmp_path_factory):
    """Eight MedMCQA questions in the release's layout (1-based cop), with varied option texts."""
    records = [
        record(i, cop=1 + i % 4, opa=f"option a{i}", opb=f"b {i * 7}", opc=f"the c of {i}", opd="none of the above")
        for i in range(8)
    ]
    return write_release(tmp_path_factory.mktemp("medmcqa"), records)


def test_agrees_with_lm_evaluation_harness(tiny_llama, medmcqa_release):
    """medqa_4options, medmcqa, mmlu_college_medicine zero-shot and 3-shot: the harness's own task files, run on the
    same 8 questions each (one harness run for all four, as its start-up dominates)."""
    pytest.importorskip("lm_eval")
    from bench.lm_eval_reference import harness_choice_loglikelihoods

    model, tokenizer = _load(tiny_llama)
    subjects = ("college_medicine",)  # a harness task is one subject
    runs = {"medqa": ("medqa", MEDQA_DIR, 0), "medmcqa": ("medmcqa", medmcqa_release, 0),
            "mmlu": ("mmlu", MMLU_DIR, 0), "mmlu_3shot": ("mmlu", MMLU_DIR, 3)}  # fmt: skip
    dev = mmlu.load_mmlu(str(MMLU_DIR), subjects, "dev")[0]
    benchmarks = {name: mc.load_benchmark(task, str(source), None, k, limit=8, subjects=subjects)
                  for name, (task, source, k) in runs.items()}  # fmt: skip
    harness = harness_choice_loglikelihoods(
        model, tokenizer, {name: (runs[name][0], b.rows, b.num_fewshot, dev) for name, b in benchmarks.items()}, 4
    )
    for name, benchmark in benchmarks.items():
        predicted, ours = mc.predict(model, tokenizer, benchmark, "loglikelihood", 1024, batch_size=4)
        theirs, their_accuracy = harness[name]
        assert torch.allclose(torch.tensor(ours), torch.tensor(theirs), atol=1e-4), name
        assert predicted == [mc.LETTERS[max(range(4), key=s.__getitem__)] for s in theirs], name
        result = mc.scores(benchmark.rows, predicted, ours, samples=100, seed=0)
        assert result["accuracy"] == pytest.approx(their_accuracy) and result["n"] == 8, name


@pytest.mark.parametrize("mode", mc.MODES)
def test_one_forward_per_question_equals_one_per_choice(tiny_llama, mode):
    model, tokenizer = _load(tiny_llama, chat=mode == "chat")
    benchmark = mc.load_benchmark("mmlu", str(MMLU_DIR), limit=2)
    requests = mc.build_requests(benchmark.contexts, tokenizer, mode)
    # " A" … " D" are one token each; after a chat turn's trailing newline (moved into the continuation, as the
    # harness moves it) the letters share that first token: one forward still scores all four
    assert all(len({tuple(c[:-1]) for c in r.choices}) == 1 for r in requests)
    assert mode == "chat" or all(len(c) == 1 for r in requests for c in r.choices)
    one = score_choices(model, tokenizer, requests, 1024, batch_size=4)
    per_choice = score_choices(model, tokenizer, requests, 1024, batch_size=4, single_forward=False)
    assert torch.allclose(torch.tensor(one), torch.tensor(per_choice), atol=1e-4)
    if mode == "chat":  # the question went through the chat template, the letter starts the assistant's turn
        turn = chat_prompt(benchmark.contexts[0])
        expected = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
        assert tokenizer.decode(requests[0].context) == expected.rstrip() and "Answer:" not in turn[0]["content"]


def test_scores_micro_macro_and_distribution():
    rows = [{"id": f"anatomy/{i}", "subject": "anatomy", "answer": 0} for i in range(3)]
    rows += [{"id": "college_biology/0", "subject": "college_biology", "answer": 1}]
    predicted = ["A", "A", "C", "B"]
    choice_scores = [[0.0, -1.0, -2.0, -3.0]] * 2 + [[-2.0, -1.0, 0.0, -3.0], [-1.0, 0.0, -2.0, -3.0]]
    result = mc.scores(rows, predicted, choice_scores, samples=200, seed=0, per_subject=True)
    assert result["accuracy"] == 0.75 and result["acc_norm"] == 0.75
    assert result["subjects"] == {"anatomy": {"accuracy": 2 / 3, "n": 3}, "college_biology": {"accuracy": 1.0, "n": 1}}
    assert result["macro_accuracy"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert result["prediction_distribution"] == {"A": 2, "B": 1, "C": 1, "D": 0}
    assert result["answer_distribution"] == {"A": 3, "B": 1, "C": 0, "D": 0}
    assert result["accuracy_ci95"][0] <= 0.75 <= result["accuracy_ci95"][1]


def test_fewshot_limits_and_errors():
    with pytest.raises(MedsftError, match="draws its exemplars at random from the train split"):
        mc.load_benchmark("medqa", str(MEDQA_DIR), num_fewshot=1)
    with pytest.raises(MedsftError, match="only 5 dev rows"):
        mc.load_benchmark("mmlu", str(MMLU_DIR), num_fewshot=6, subjects=("anatomy",))
    limited = mc.load_benchmark("mmlu", str(MMLU_DIR), limit=2)
    assert [r["id"] for r in limited.rows][:4] == [
        "anatomy/0",
        "anatomy/1",
        "clinical_knowledge/0",
        "clinical_knowledge/1",
    ]
    assert len(limited.rows) == 12 and limited.available == 1089
