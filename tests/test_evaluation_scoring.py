"""medsft.evaluation.scoring: a prefix shared by several questions is computed once and gives the numbers of the
full forward; batches never mix prefix groups."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from medsft.evaluation import scoring
from medsft.evaluation import task_multiple_choice as mc
from medsft.evaluation.loglikelihood import score_choices
from medsft.modeling.loading import load_tokenizer
from medsft.modeling.source import resolve_model_source
from tests.conftest import MMLU_DIR


def test_prefix_groups_keep_a_subject_together_and_leave_chance_overlaps_out():
    shots_a, shots_b = list(range(100, 140)), list(range(100, 120)) + list(range(300, 320))
    contexts = [
        shots_a + [1, 2, 3],
        shots_a + [1, 2, 4, 5],
        shots_a + [7],
        shots_b + [8, 9],  # shares 20 tokens with subject a: joining would shrink a's 40-token prefix
        shots_b + [8, 10],
        list(range(500, 530)),  # alone
        shots_a[:10] + [2],  # sorts first; joining would shrink subject a's prefix to 10 tokens
        shots_a[:5] + [0],  # shares fewer than MIN_SHARED_PREFIX tokens with anything
    ]
    groups = scoring.prefix_groups(contexts, batch_size=2)
    assert [shared for _, shared in groups] == [40, 40, 40, 41, 41, 0, 0, 0]
    assert groups[0][0] == groups[1][0] == groups[2][0] != groups[3][0] == groups[4][0]
    assert groups[5] == groups[6] == groups[7] == (-1, 0)
    # the last token of a context is never shared: its logits score the choices
    assert [shared for _, shared in scoring.prefix_groups([shots_a + [1], shots_a], 2)] == [39, 39]
    batches = scoring.make_batches([len(c) for c in contexts], 2, [g for g, _ in groups])
    assert sorted(i for b in batches for i in b) == list(range(len(contexts)))
    assert all(len({groups[i][0] for i in b}) == 1 for b in batches)


def test_a_group_is_formed_only_where_it_saves_more_than_its_padding_costs():
    short, long = list(range(10)) + [50, 51], list(range(10)) + list(range(100, 390))  # 10 tokens in common
    # batched together, the short question is padded to 300 positions: 10 + 2 * 290 > 12 + 300 computed apart
    assert scoring.prefix_groups([short, long], batch_size=2) == [(-1, 0), (-1, 0)]
    # one question per batch: no padding, and the 10 tokens are computed once
    assert [shared for _, shared in scoring.prefix_groups([short, long], batch_size=1)] == [10, 10]


@pytest.mark.parametrize("model_fixture", ["tiny_gpt2", "tiny_llama"])
def test_shared_fewshot_prefix_gives_the_full_forwards_numbers(model_fixture, request):
    """MMLU 3-shot, two subjects, batches of 3 (suffixes of different lengths, so padded): the prefix computed once
    per subject gives each letter's log-likelihood of one full forward per choice (GPT-2: absolute positions;
    Llama: rotary), and the same predictions."""
    path = request.getfixturevalue(model_fixture)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(resolve_model_source(path))
    subjects = ("anatomy", "medical_genetics")
    benchmark = mc.load_benchmark("mmlu", str(MMLU_DIR), num_fewshot=3, limit=5, subjects=subjects)
    requests = mc.build_requests(benchmark.contexts, tokenizer, "loglikelihood")
    groups = scoring.prefix_groups([r.context for r in requests], batch_size=3)
    assert len({g for g, _ in groups}) == 2 and min(shared for _, shared in groups) > 100  # the exemplars
    shared = score_choices(model, tokenizer, requests, 1024, batch_size=3)
    full = score_choices(model, tokenizer, requests, 1024, batch_size=3, single_forward=False)
    assert torch.allclose(torch.tensor(shared), torch.tensor(full), atol=1e-5)
    assert [max(range(4), key=s.__getitem__) for s in shared] == [max(range(4), key=s.__getitem__) for s in full]


def test_prefix_is_computed_once_per_group(tiny_llama, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(resolve_model_source(tiny_llama))
    benchmark = mc.load_benchmark(
        "mmlu", str(MMLU_DIR), num_fewshot=2, limit=6, subjects=("anatomy", "college_biology")
    )
    computed = []
    original = scoring.PrefixCache.expanded

    def counting(self, tokens, batch):
        if tokens != self.tokens:
            computed.append(len(tokens))
        return original(self, tokens, batch)

    monkeypatch.setattr(scoring.PrefixCache, "expanded", counting)
    score_choices(model, tokenizer, mc.build_requests(benchmark.contexts, tokenizer, "loglikelihood"), 1024, 2)
    assert len(computed) == 2  # one per subject, though each subject's 6 questions are 3 batches


def test_a_model_without_a_repeatable_cache_is_scored_whole(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(resolve_model_source(tiny_llama))
    requests = mc.build_requests(
        mc.load_benchmark("mmlu", str(MMLU_DIR), num_fewshot=2, limit=3, subjects=("anatomy",)).contexts,
        tokenizer,
        "loglikelihood",
    )
    expected = score_choices(model, tokenizer, requests, 1024, 2, single_forward=False)
    forward = model.forward

    def without_cache(*args, **kwargs):
        return type(out := forward(*args, **kwargs))(logits=out.logits)

    model.forward = without_cache
    assert torch.allclose(torch.tensor(score_choices(model, tokenizer, requests, 1024, 2)), torch.tensor(expected))
