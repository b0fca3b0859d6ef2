"""Shared fixtures: tiny randomly initialised models with the real GPT-2 tokenizer, and ../shared data.

Nothing here touches the network. ``MEDSFT_SHARED`` points at another copy of the shared folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MEDSFT_SHARED", ROOT.parent / "shared"))
WIKIDOC_JSON = SHARED / "data/wikidoc_patient_information/medical_meadow_wikidoc_patient_information.json"
PUBMEDQA_DIR = SHARED / "data/pubmedqa"
MEDQUAD_DIR = SHARED / "data/medquad"
MEDQA_DIR = SHARED / "data/medqa"
MMLU_DIR = SHARED / "data/mmlu"
GPT2_TOKENIZER = SHARED / "models/gpt2-tokenizer"
SMOLLM2_GGUF = SHARED / "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"


# The files whose tests start `accelerate launch` (several processes each): they share accelerate's default port
# (29500) and the session's DDP reference runs, so under pytest-xdist they run on one worker, one after another
LAUNCH_FILES = ("test_modeling_sharding.py", "test_multiprocess.py")


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        # the README's `-n 2`: the cores shared among the workers (torch here, and every process a test starts), so
        # one worker's single-threaded work (imports, tokenizing, launches starting) overlaps the other's training
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def _test_group(nodeid: str) -> str:
    """The pytest-xdist work unit of a test: its file (a module's fixtures, trained runs, are made once), the launch
    files together."""
    path = nodeid.split("::", 1)[0]
    return "accelerate launches" if Path(path).name in LAUNCH_FILES else path


def pytest_collection_modifyitems(config, items):
    """The longest work first (the other worker takes the rest meanwhile): the launch files, then files with real-model
    (``slow``) tests, then the rest; stable, so the order within each file is kept."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path.name not in LAUNCH_FILES, item.path not in slow_files))


if importlib.util.find_spec("xdist"):  # a dev extra; without it the hook below would be an unknown one

    def pytest_xdist_make_scheduler(config, log):
        """``-n 2``: whole groups (``_test_group``) to a worker, in the order above. pytest-xdist's own ``--dist
        loadgroup`` reads marks into test ids that pytest 9 no longer takes from ``_nodeid`` (each test went
        anywhere)."""
        from xdist.scheduler import LoadScopeScheduling

        class GroupScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return _test_group(nodeid)

        config.option.loadscopereorder = False  # keep the order above, not "most tests first"
        return GroupScheduling(config, log)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: tests need the shared data folder beside the project (or MEDSFT_SHARED)")
    return path


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(_require(GPT2_TOKENIZER))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, gpt2_tokenizer) -> str:
    """A 2-layer GPT-2 (Conv1D c_attn/c_proj/c_fc) with random weights, no dropout, and the real tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        n_positions=1024,  # the recipes' max_length
        vocab_size=len(gpt2_tokenizer),
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    path = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(path)
    gpt2_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, gpt2_tokenizer) -> str:
    """A 2-layer Llama-architecture model (q/k/v/o, gate/up/down) with random weights and the GPT-2 tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(gpt2_tokenizer),
        max_position_embeddings=1024,
        bos_token_id=gpt2_tokenizer.bos_token_id,
        eos_token_id=gpt2_tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    gpt2_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def medsft_cache(tmp_path_factory) -> Path:
    """A ``MEDSFT_CACHE`` for the tests that use the real SmolLM2 GGUF, instead of the user's ~/.cache/medsft: the
    file is dequantized into its ``gguf`` folder once per session, by whichever of them runs first."""
    return tmp_path_factory.mktemp("medsft-cache")


@pytest.fixture(scope="session")
def gguf_cache(medsft_cache) -> str:
    """The folder a command run with ``MEDSFT_CACHE=medsft_cache`` (the quickstart) dequantizes into."""
    from medsft.modeling.source import default_gguf_cache_dir

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSFT_CACHE", str(medsft_cache))
        return str(default_gguf_cache_dir())


@pytest.fixture(scope="session")
def wikidoc_small(tmp_path_factory) -> str:
    """The first 80 rows of the real WikiDoc file, for quick training runs."""
    rows = json.loads(_require(WIKIDOC_JSON).read_text())[:80]
    path = tmp_path_factory.mktemp("wikidoc") / "wikidoc_small.json"
    path.write_text(json.dumps(rows))
    return str(path)


@pytest.fixture(scope="session")
def medquad_small(tmp_path_factory) -> str:
    """Three of MedQuAD's twelve collections (CancerGov, NIDDK, NHLBI: 361 of 5,489 files), copied in the official
    layout: loading, the per-focus split and decontamination run on real files in a fraction of the full set's time."""
    import shutil

    root = tmp_path_factory.mktemp("medquad")
    for collection in ("1_CancerGov_QA", "5_NIDDK_QA", "8_NHLBI_QA_XML"):
        shutil.copytree(_require(MEDQUAD_DIR) / collection, root / collection)
    return str(root)


# The one spelling of "a recipe, CPU-sized": tiny batches, no checkpointing or progress bars. Tests add their own
# step counts and save/eval settings (QUICK_TRAINING: no evaluation or checkpoints at all).
CPU_TRAINING = [
    "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--gradient_checkpointing", "false",
    "--disable_tqdm", "true",
]  # fmt: skip
QUICK_TRAINING = [
    *CPU_TRAINING, "--per_device_train_batch_size", "4", "--learning_rate", "5e-2", "--eval_strategy", "no",
    "--save_strategy", "no", "--load_best_model_at_end", "false",
]  # fmt: skip


def recipe_argv(recipe: str, model: str, output_dir: Path, *overrides: str, quick: bool = True) -> list[str]:
    """``recipes/<recipe>.yaml`` on ``model`` with CPU-sized flags (later flags override earlier ones)."""
    flags = QUICK_TRAINING if quick else CPU_TRAINING
    return [str(ROOT / "recipes" / f"{recipe}.yaml"), "--model_name_or_path", model, "--output_dir", str(output_dir),
            *flags, *overrides]  # fmt: skip


def assert_training_logs(run_dir: Path, log_history: list[dict]) -> None:
    """The run directory holds TensorBoard event files with every logged training loss, and ``loss_curve.png``."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(Path(run_dir, "runs").rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {run_dir}/runs"
    logged = {e["step"]: e["loss"] for e in log_history if "loss" in e}
    accumulator = EventAccumulator(str(events[-1].parent)).Reload()
    scalars = {s.step: s.value for s in accumulator.Scalars("train/loss")}
    assert scalars.keys() == logged.keys()
    assert all(abs(scalars[step] - loss) <= 1e-4 * max(1.0, abs(loss)) for step, loss in logged.items())
    with Image.open(Path(run_dir, "loss_curve.png")) as image:
        assert image.format == "PNG" and image.size[0] > 300


def train_quickly(recipe: str, model: str, output_dir: Path, *overrides: str) -> Path:
    """Train ``recipes/<recipe>.yaml`` for a few steps on ``model`` (later flags override the quick ones)."""
    from medsft.train import main as train

    train(recipe_argv(recipe, model, output_dir, *overrides))
    return output_dir


@pytest.fixture(scope="session")
def pubmedqa_official() -> tuple[dict, dict]:
    """PubMedQA's ``ori_pqal.json`` questions and ``test_ground_truth.json`` labels, read with plain json."""
    questions = json.loads((_require(PUBMEDQA_DIR) / "ori_pqal.json").read_text())
    test = json.loads((PUBMEDQA_DIR / "test_ground_truth.json").read_text())
    return questions, test


def cpu_launch_config(name: str, directory: Path, **changes) -> Path:
    """``accelerate_configs/<name>.yaml`` as shipped, changed for two CPU processes (and ``changes``; a section such
    as ``fsdp_config`` is updated key by key)."""
    import yaml

    config = yaml.safe_load((ROOT / "accelerate_configs" / f"{name}.yaml").read_text())
    config.update(use_cpu=True, num_processes=2, mixed_precision="no")
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    path = directory / f"{name}_cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


LAUNCH_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def launch_argv(
    config: Path, record: Path, recipe: str, model: str, data: str, out: Path, *overrides: str
) -> list[str]:
    """``accelerate launch --config_file CONFIG`` of ``medsft.train`` through tests/helpers/ddp_probe.py (which
    records each rank's examples and how the model was distributed into ``record``): the recipe on a tiny model,
    4 steps, a checkpoint every 2."""
    import sys

    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
        str(ROOT / "tests/helpers/ddp_probe.py"), str(record),
        *recipe_argv(
            recipe, model, out, "--dataset_name", data, "--max_length", "128", "--max_steps", "4", "--save_steps",
            "2", "--logging_steps", "1", "--learning_rate", "1e-2", *overrides, quick=False,
        ),
    ]  # fmt: skip


def launch_training(config: Path, record: Path, recipe: str, model: str, data: str, out: Path, *overrides: str):
    """Run ``launch_argv(...)`` to the end; returns the finished process."""
    import subprocess

    return subprocess.run(
        launch_argv(config, record, recipe, model, data, out, *overrides),
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **LAUNCH_ENV}, timeout=600,
    )  # fmt: skip


def probe_records(record: Path) -> list[dict]:
    """What tests/helpers/ddp_probe.py recorded for ranks 0 and 1."""
    return [json.loads((record / f"rank{i}.json").read_text()) for i in (0, 1)]


# How each tiny model is trained in multi-process tests: GPT-2 by the QLoRA recipe in 4-bit (with the quantized
# weights stored as bfloat16, which FSDP needs to shard them), the Llama-type model by the SmolLM2 recipe as LoRA
RECIPE_FOR = {"gpt2": "wikidoc_qlora", "llama": "wikidoc_qlora_smollm2"}
RUN_FLAGS = {
    "gpt2": ["--load_in_4bit", "true", "--bnb_4bit_quant_storage", "bfloat16"],
    "llama": ["--load_in_4bit", "false"],
}


@pytest.fixture(scope="session")
def ddp_reference(tmp_path_factory, tiny_gpt2, tiny_llama, wikidoc_small):
    """A 2-process DDP run (accelerate_configs/multi_cpu.yaml) of the recipe on a tiny model, made once per model;
    ``ddp_reference(kind)`` returns its run directory and probe records."""
    made: dict[str, tuple[Path, list[dict]]] = {}

    def get(kind: str) -> tuple[Path, list[dict]]:
        if kind not in made:
            base = tmp_path_factory.mktemp(f"ddp-{kind}")
            model = {"gpt2": tiny_gpt2, "llama": tiny_llama}[kind]
            proc = launch_training(
                ROOT / "accelerate_configs/multi_cpu.yaml",
                base / "record",
                RECIPE_FOR[kind],
                model,
                wikidoc_small,
                base / "run",
                *RUN_FLAGS[kind],
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            made[kind] = base / "run", probe_records(base / "record")
        return made[kind]

    return get


@contextmanager
def small_disk(path: Path, size: str):
    """A ``size`` tmpfs mounted at ``path`` (a new folder), for writes that fill a real disk; the test is skipped
    where mounting is not allowed (it needs root)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"a {size} tmpfs cannot be mounted here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)  # lazy: a writer may hold a file open
