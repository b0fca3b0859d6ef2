"""The fault matrix: every bad input to every command gets one line (exit 2) naming the file, row, field or flag.

Each case runs a command's console entry point (``medsft.train.cli`` ... the functions ``python -m medsft.X`` and the
console scripts call) with its arguments, in this process so that 70 cases take seconds, and checks: exit code 2,
one ``medsft.X: error: ...`` line on stderr that names what is wrong, and no traceback (an exception escaping the
entry point fails the case). ``test_matrix_runs_as_a_real_command`` replays a few of them as real subprocesses.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PUBMEDQA_DIR, ROOT, WIKIDOC_JSON

RECIPE = str(ROOT / "recipes/wikidoc_qlora.yaml")
ENTRY = {
    "train": "medsft.train", "evaluate": "medsft.evaluate", "push": "medsft.push", "generate": "medsft.generate",
    "preview": "medsft.preview",
}  # fmt: skip


def run_entry(command: str, argv: list[str]) -> tuple[int, str]:
    """Run ``medsft.<command>``'s console entry point with ``argv``; return (exit code, stderr)."""
    module, prog_argv = importlib.import_module(ENTRY[command]), [ENTRY[command], *argv]
    err = io.StringIO()
    old_argv = sys.argv
    sys.argv = prog_argv
    code = 0
    try:
        with contextlib.redirect_stderr(err):
            module.cli()
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = old_argv
    return code, err.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_gpt2) -> dict[str, str]:
    """Bad data files, recipes and directories, each written once."""
    d = tmp_path_factory.mktemp("bad")
    rows = json.loads(WIKIDOC_JSON.read_text())[:40]
    pqa = json.loads((PUBMEDQA_DIR / "ori_pqal.json").read_text())
    test = (PUBMEDQA_DIR / "test_ground_truth.json").read_text()

    def write(name: str, content: str | bytes) -> str:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return str(path)

    def pubmedqa_dir(name: str, change) -> str:
        data = json.loads(json.dumps(pqa))
        change(data[next(p for p in data if p not in json.loads(test))])
        write(f"{name}/ori_pqal.json", json.dumps(data))
        write(f"{name}/test_ground_truth.json", test)
        return str(d / name)

    latin = json.dumps(rows[:3], ensure_ascii=False).replace("truthfully", "truthfully caf\u00e9")
    return {
        "latin1": write("latin1.json", latin.encode("latin-1")),
        "surrogate": write(
            "surrogate.json", json.dumps(rows[:2])[:-1] + ', {"instruction": "x", "input": "\\ud800", "output": "y"}]'
        ),  # fmt: skip
        "one_row": write("one_row.json", json.dumps([rows[0]] * 5)),  # five copies: one unique row
        "malformed": write("malformed.json", '[{"instruction": "a", '),
        "not_a_list": write("not_a_list.json", json.dumps({"instruction": "a"})),
        "empty_list": write("empty_list.json", "[]"),
        "no_output": write("no_output.json", json.dumps([{"instruction": "a", "input": "b"}] * 3)),
        "output_number": write("output_number.json", json.dumps([{**r, "output": 7} for r in rows[:20]])),
        "hf_no_columns": write("hf_cols.jsonl", "\n".join([json.dumps({"question": "q", "answer": "a"})] * 30)),
        "hf_null_text": write("hf_null.jsonl", "\n".join([json.dumps({"text": "fine"})] * 20 + ['{"text": null}'])),
        "hf_bad_line": write("hf_bad.jsonl", '{"text": "a"}\n{"text": \n'),
        "pqa_null_question": pubmedqa_dir("pqa_null_q", lambda r: r.update(QUESTION=None)),
        "pqa_number_answer": pubmedqa_dir("pqa_num_la", lambda r: r.update(LONG_ANSWER=3)),
        "pqa_bad_label": pubmedqa_dir("pqa_label", lambda r: r.update(final_decision="perhaps")),
        "pqa_no_test": write("pqa_no_test/ori_pqal.json", json.dumps(pqa)) and str(d / "pqa_no_test"),
        "empty_recipe": write("empty.yaml", ""),
        "list_recipe": write("list.yaml", "- a\n- b\n"),
        "bad_yaml": write("bad.yaml", "model_name_or_path: [gpt2\n"),
        "unknown_key": write("unknown.yaml", "model_name_or_path: gpt2\nlearning_rat: 1e-4\n"),
        "mix_zero": write(
            "mix0.yaml",
            "datasets:\n  - {path: a.json, type: wikidoc, fraction: 0}\n"
            "  - {path: b.json, type: wikidoc, fraction: 0}\n",
        ),  # fmt: skip
        "mix_missing": write(
            "mix1.yaml",
            "datasets:\n  - {path: a.json, type: wikidoc, fraction: 0.5}\n  - {path: b.json, type: wikidoc}\n",
        ),  # fmt: skip
        "mix_bad_key": write("mix2.yaml", "datasets:\n  - {path: a.json, typ: wikidoc}\n"),
        "model_no_config": write("model_no_config/weights.bin", b"") and str(d / "model_no_config"),
        "a_file": write("a_file.txt", "not a directory"),
        "texts": write("texts.txt", "Asthma narrows the airways.\n\nInsulin lowers blood sugar.\n"),
        "not_medsft": write("not_medsft/notes.txt", "mine") and str(d / "not_medsft"),
        "tiny": tiny_gpt2,
        "dir": str(d),
    }


def train(f, *extra):
    """The shipped recipe on the tiny model, CPU-sized, with a fresh output directory."""
    out = Path(f["dir"]) / f"out-{len(list(Path(f['dir']).glob('out-*')))}"
    return [RECIPE, "--model_name_or_path", f["tiny"], "--dataset_name", str(WIKIDOC_JSON), "--output_dir", str(out),
            "--max_length", "128", "--max_steps", "1", *extra]  # fmt: skip


def evaluate(f, *extra):
    return ["--model_name_or_path", f["tiny"], "--tasks", "perplexity", "--perplexity_dataset", f["texts"], *extra]


# (id, command, argv builder, what the one line must name)
CASES = [
    # data files
    ("latin1", "train", lambda f: train(f, "--dataset_name", f["latin1"]), ["latin1.json", "UTF-8"]),
    ("latin1-preview", "preview", lambda f: train(f, "--dataset_name", f["latin1"]), ["latin1.json", "UTF-8"]),
    ("surrogate", "train", lambda f: train(f, "--dataset_name", f["surrogate"]), ["surrogate.json", "row 3"]),
    ("one-unique-row", "train", lambda f: train(f, "--dataset_name", f["one_row"]), ["one_row.json", "1 "]),
    ("malformed-json", "train", lambda f: train(f, "--dataset_name", f["malformed"]), ["malformed.json", "line"]),
    ("not-a-list", "train", lambda f: train(f, "--dataset_name", f["not_a_list"]), ["not_a_list.json"]),
    ("empty-list", "train", lambda f: train(f, "--dataset_name", f["empty_list"]), ["empty_list.json"]),
    ("missing-field", "train", lambda f: train(f, "--dataset_name", f["no_output"]), ["no_output.json", "output"]),
    ("field-not-text", "train", lambda f: train(f, "--dataset_name", f["output_number"]), ["output_number", "output"]),
    ("missing-file", "train", lambda f: train(f, "--dataset_name", f["dir"] + "/nope.json"), ["nope.json"]),
    (
        "missing-path-auto",
        "train",
        lambda f: train(f, "--dataset_name", f["dir"] + "/nowhere", "--dataset_type", "auto"),
        ["nowhere", "not exist"],
    ),
    (
        "unknown-layout",
        "train",
        lambda f: train(f, "--dataset_name", f["texts"], "--dataset_type", "auto"),
        ["texts.txt", "--dataset_type"],
    ),
    (
        "hf-no-columns",
        "train",
        lambda f: train(f, "--dataset_name", f["hf_no_columns"], "--dataset_type", "hf"),
        ["hf_cols.jsonl", "question, answer"],
    ),
    (
        "hf-null-text",
        "train",
        lambda f: train(f, "--dataset_name", f["hf_null_text"], "--dataset_type", "hf"),
        ["hf_null.jsonl", "row 21", "text"],
    ),
    (
        "hf-bad-line",
        "train",
        lambda f: train(f, "--dataset_name", f["hf_bad_line"], "--dataset_type", "hf"),
        ["hf_bad.jsonl", "line 2"],
    ),
    (
        "pubmedqa-null-question",
        "train",
        lambda f: train(f, "--dataset_name", f["pqa_null_question"], "--dataset_type", "pubmedqa"),
        ["QUESTION", "PMID"],
    ),
    (
        "pubmedqa-number-long-answer",
        "train",
        lambda f: train(
            f, "--dataset_name", f["pqa_number_answer"], "--dataset_type", "pubmedqa", "--pubmedqa_long_answer", "true"
        ),
        ["LONG_ANSWER", "PMID"],
    ),  # fmt: skip
    (
        "pubmedqa-bad-label",
        "train",
        lambda f: train(f, "--dataset_name", f["pqa_bad_label"], "--dataset_type", "pubmedqa"),
        ["perhaps", "PMID"],
    ),
    (
        "pubmedqa-no-test-list",
        "train",
        lambda f: train(f, "--dataset_name", f["pqa_no_test"], "--dataset_type", "pubmedqa"),
        ["test_ground_truth.json"],
    ),
    ("format-not-offered", "train", lambda f: train(f, "--dataset_format", "special_tokens"), ["special_tokens"]),
    (
        "max-length-cuts-answers",
        "train",
        lambda f: train(
            f,
            "--dataset_name",
            str(PUBMEDQA_DIR),
            "--dataset_type",
            "pubmedqa",
            "--dataset_format",
            "instruction",
            "--max_length",
            "256",
        ),
        ["max_length=256", "whole answer"],
    ),  # fmt: skip
    # recipes
    ("empty-recipe", "train", lambda f: [f["empty_recipe"]], ["empty.yaml", "empty"]),
    ("recipe-not-mapping", "train", lambda f: [f["list_recipe"]], ["list.yaml", "mapping"]),
    ("recipe-bad-yaml", "train", lambda f: [f["bad_yaml"]], ["bad.yaml", "YAML"]),
    ("recipe-unknown-key", "train", lambda f: [f["unknown_key"]], ["learning_rat"]),
    ("recipe-missing", "train", lambda f: [f["dir"] + "/nope.yaml"], ["nope.yaml"]),
    ("config-without-path", "train", lambda f: ["--config"], ["--config"]),
    ("mixture-fractions-zero", "train", lambda f: [f["mix_zero"], "--model_name_or_path", f["tiny"]], ["fraction"]),
    (
        "mixture-fraction-missing",
        "train",
        lambda f: [f["mix_missing"], "--model_name_or_path", f["tiny"]],
        ["fraction", "b.json"],
    ),
    ("mixture-unknown-key", "train", lambda f: [f["mix_bad_key"]], ["typ"]),
    # flags
    ("misspelled-flag", "train", lambda f: train(f, "--learnig_rate", "1e-3"), ["--learnig_rate", "--learning_rate"]),
    ("unknown-flag", "train", lambda f: train(f, "--frobnicate", "1"), ["--frobnicate"]),
    ("abbreviated-flag", "train", lambda f: train(f, "--learning_rat", "1e-3"), ["--learning_rat"]),
    ("bad-float", "train", lambda f: train(f, "--learning_rate", "fast"), ["--learning_rate", "fast"]),
    ("bad-choice", "train", lambda f: train(f, "--dataset_type", "csv"), ["--dataset_type", "csv"]),
    ("bad-bool", "train", lambda f: train(f, "--packing", "maybe"), ["--packing", "maybe"]),
    ("max-length-zero", "train", lambda f: train(f, "--max_length", "0"), ["--max_length", "0"]),
    ("max-length-negative", "train", lambda f: train(f, "--max_length", "-5"), ["--max_length", "-5"]),
    ("max-length-over-positions", "train", lambda f: train(f, "--max_length", "4096"), ["4096", "1024"]),
    ("lora-r-zero", "train", lambda f: train(f, "--lora_r", "0"), ["--lora_r", "0"]),
    ("lora-dropout", "train", lambda f: train(f, "--lora_dropout", "1.5"), ["--lora_dropout"]),
    ("adapter-strength-zero", "train", lambda f: train(f, "--adapter_strength", "0"), ["--adapter_strength", "0"]),
    ("adapter-strength-nan", "train", lambda f: train(f, "--adapter_strength", "nan"), ["--adapter_strength", "nan"]),
    (
        "adapter-strength-dora",
        "train",
        lambda f: train(f, "--adapter_strength", "0.5", "--use_dora", "true"),
        ["--adapter_strength", "--use_dora", "magnitude"],
    ),
    (
        "batch-size-zero",
        "train",
        lambda f: train(f, "--per_device_train_batch_size", "0"),
        ["--per_device_train_batch_size"],
    ),
    (
        "accumulation-zero",
        "train",
        lambda f: train(f, "--gradient_accumulation_steps", "0"),
        ["--gradient_accumulation_steps"],
    ),
    ("max-steps-zero", "train", lambda f: train(f, "--max_steps", "0"), ["--max_steps"]),
    ("negative-lr", "train", lambda f: train(f, "--learning_rate", "-1"), ["--learning_rate"]),
    ("validation-size", "train", lambda f: train(f, "--validation_size", "1.5"), ["validation_size"]),
    ("max-train-samples", "train", lambda f: train(f, "--max_train_samples", "0"), ["max_train_samples"]),
    ("truncated-share", "train", lambda f: train(f, "--max_truncated_share", "2"), ["max_truncated_share"]),
    (
        "strategies-mismatch",
        "train",
        lambda f: train(f, "--eval_strategy", "steps", "--save_strategy", "epoch", "--load_best_model_at_end", "true"),
        ["load_best_model_at_end"],
    ),
    (
        "early-stopping-without-eval",
        "train",
        lambda f: train(f, "--early_stopping_patience", "2"),
        ["early_stopping_patience"],
    ),
    ("4bit-without-peft", "train", lambda f: train(f, "--use_peft", "false"), ["load_in_4bit", "use_peft"]),
    ("lora-targets", "train", lambda f: train(f, "--lora_target_modules", "q_proj"), ["q_proj", "c_attn"]),
    ("model-missing", "train", lambda f: train(f, "--model_name_or_path", f["dir"] + "/no-model"), ["no-model"]),
    ("model-no-config", "train", lambda f: train(f, "--model_name_or_path", f["model_no_config"]), ["config.json"]),
    ("gguf-missing", "train", lambda f: train(f, "--model_name_or_path", f["dir"] + "/m.gguf"), ["m.gguf"]),
    ("output-dir-file", "train", lambda f: train(f, "--output_dir", f["a_file"]), ["a_file.txt", "file"]),
    ("output-dir-foreign", "train", lambda f: train(f, "--output_dir", f["not_medsft"]), ["not_medsft", "notes.txt"]),
    (
        "output-dir-unwritable",
        "train",
        lambda f: train(f, "--output_dir", "/proc/medsft-run"),
        ["--output_dir /proc/medsft-run cannot be written"],
    ),
    ("resume-missing", "train", lambda f: train(f, "--resume_from_checkpoint", f["dir"] + "/ckpt"), ["ckpt"]),
    (
        "push-to-hub-local-base",
        "train",
        lambda f: train(f, "--push_to_hub", "true", "--hub_model_id", "me/x"),
        ["--push_to_hub", "local"],
    ),
    ("train-zero-epochs", "train", lambda f: train(f, "--max_steps", "-1", "--num_train_epochs", "0"), ["epochs 0"]),
    ("train-seed-negative", "train", lambda f: train(f, "--seed", "-5"), ["--seed"]),
    ("train-weight-decay-negative", "train", lambda f: train(f, "--weight_decay", "-0.1"), ["--weight_decay"]),
    ("train-grad-norm-negative", "train", lambda f: train(f, "--max_grad_norm", "-1"), ["--max_grad_norm", "0 turns"]),
    ("train-save-limit-zero", "train", lambda f: train(f, "--save_total_limit", "0"), ["--save_total_limit"]),
    ("train-eval-steps-zero", "train", lambda f: train(f, "--eval_steps", "0"), ["--eval_steps"]),
    # preview
    ("preview-no-split", "preview", lambda f: train(f, "--split", "test"), ["test"]),
    ("preview-negative-examples", "preview", lambda f: train(f, "--num_examples", "-2"), ["--num_examples"]),
    ("preview-unknown-flag", "preview", lambda f: train(f, "--num_exampels", "2"), ["--num_examples"]),
    # evaluate
    ("eval-unknown-task", "evaluate", lambda f: evaluate(f, "--tasks", "bleu"), ["bleu"]),
    (
        "eval-adapter-missing",
        "evaluate",
        lambda f: evaluate(f, "--adapters", f["dir"] + "/no-adapter"),
        ["no-adapter"],
    ),
    ("eval-full-model-as-adapter", "evaluate", lambda f: evaluate(f, "--adapters", f["tiny"]), ["full model"]),
    ("eval-text-missing", "evaluate", lambda f: evaluate(f, "--perplexity_dataset", f["dir"] + "/t.txt"), ["t.txt"]),
    ("eval-limit-zero", "evaluate", lambda f: evaluate(f, "--limit", "0"), ["--limit"]),
    ("eval-batch-zero", "evaluate", lambda f: evaluate(f, "--batch_size", "0"), ["--batch_size"]),
    (
        "eval-pubmedqa-missing",
        "evaluate",
        lambda f: evaluate(f, "--tasks", "pubmedqa", "--pubmedqa_dataset", f["dir"] + "/pqa"),
        ["pqa"],
    ),
    ("eval-misspelled-flag", "evaluate", lambda f: evaluate(f, "--adapter", "x"), ["--adapter", "--adapters"]),
    ("eval-seed-negative", "evaluate", lambda f: evaluate(f, "--seed", "-1"), ["--seed"]),
    ("eval-bootstrap-zero", "evaluate", lambda f: evaluate(f, "--bootstrap_samples", "0"), ["--bootstrap_samples"]),
    ("eval-stride-negative", "evaluate", lambda f: evaluate(f, "--stride", "-1"), ["--stride"]),
    ("eval-max-length-one", "evaluate", lambda f: evaluate(f, "--max_length", "1"), ["--max_length"]),
    (
        "eval-max-length-beyond-model",
        "evaluate",
        lambda f: evaluate(f, "--max_length", "5000"),
        ["--max_length 5000", "1024 positions"],
    ),
    (
        "eval-generate-no-room",
        "evaluate",
        lambda f: evaluate(
            f,
            "--tasks",
            "pubmedqa",
            "--pubmedqa_dataset",
            str(PUBMEDQA_DIR),
            "--limit",
            "2",
            "--pubmedqa_mode",
            "generate",
            "--max_length",
            "32",
            "--max_new_tokens",
            "32",
        ),
        ["--max_new_tokens 32", "max_length=32"],
    ),  # fmt: skip
    (
        "eval-output-dir-not-medsft",
        "evaluate",
        lambda f: evaluate(f, "--output_dir", f["not_medsft"]),
        ["not_medsft", "notes.txt"],
    ),
    ("eval-output-dir-a-file", "evaluate", lambda f: evaluate(f, "--output_dir", f["a_file"]), ["a_file.txt"]),
    # a folder that cannot be created is refused before scoring, not after it (a traceback once all was scored)
    (
        "eval-output-dir-under-a-file",
        "evaluate",
        lambda f: evaluate(f, "--output_dir", f["a_file"] + "/report"),
        ["--output_dir", "a_file.txt/report", "is a file"],
    ),
    (
        "eval-output-dir-unwritable",  # /proc: os.access says writable to root, creating a folder there fails
        "evaluate",
        lambda f: evaluate(f, "--output_dir", "/proc/medsft-report"),
        ["--output_dir /proc/medsft-report cannot be written"],
    ),
    (
        "eval-resume-nothing",
        "evaluate",
        lambda f: evaluate(f, "--output_dir", f["dir"] + "/no-report", "--resume", "true"),
        ["no-report", "nothing to resume"],
    ),
    # push
    (
        "push-run-missing",
        "push",
        lambda f: [f["dir"] + "/no-run", "--repo_id", "me/x", "--dry_run", f["dir"] + "/c1"],
        ["no-run"],
    ),
    (
        "push-not-a-run",
        "push",
        lambda f: [f["not_medsft"], "--repo_id", "me/x", "--dry_run", f["dir"] + "/c2"],
        ["not_medsft", "recipe.yaml"],
    ),
    (
        "push-dry-run-is-file",
        "push",
        lambda f: [f["not_medsft"], "--repo_id", "me/x", "--dry_run", f["a_file"]],
        ["a_file.txt"],
    ),
    (
        "push-repo-id-space",
        "push",
        lambda f: [f["not_medsft"], "--repo_id", "my org/my model", "--dry_run", "x"],
        ["my org/my model"],
    ),
    (
        "push-base-model-a-path",
        "push",
        lambda f: [f["not_medsft"], "--repo_id", "me/x", "--base_model", f["tiny"], "--dry_run", "x"],
        ["--base_model", "not a Hub id"],
    ),
    (
        "push-dry-run-unwritable",
        "push",
        lambda f: [f["not_medsft"], "--repo_id", "me/x", "--dry_run", "/proc/medsft-card"],
        ["--dry_run /proc/medsft-card cannot be written"],
    ),
    ("push-repo-id-dots", "push", lambda f: [f["not_medsft"], "--repo_id", "../etc", "--dry_run", "x"], ["../etc"]),
    ("push-repo-id-missing", "push", lambda f: [f["not_medsft"], "--dry_run", "x"], ["--repo_id"]),
    # generate
    ("generate-run-missing", "generate", lambda f: [f["dir"] + "/no-run", "--prompt", "hi"], ["no-run"]),
    ("generate-no-prompt", "generate", lambda f: [f["not_medsft"]], ["--prompt"]),
    ("generate-empty-prompt", "generate", lambda f: [f["not_medsft"], "--prompt", "hi", " "], ["--prompt 2 of 2"]),
    (
        "generate-no-new-tokens",
        "generate",
        lambda f: [f["not_medsft"], "--prompt", "hi", "--max_new_tokens", "0"],
        ["--max_new_tokens"],
    ),
    (
        "generate-temperature-zero",
        "generate",
        lambda f: [f["not_medsft"], "--prompt", "hi", "--do_sample", "true", "--temperature", "0"],
        ["--temperature", "above 0"],
    ),
    (
        "generate-temperature-without-sampling",
        "generate",
        lambda f: [f["not_medsft"], "--prompt", "hi", "--temperature", "0.2"],
        ["--temperature", "--do_sample"],
    ),
]


@pytest.mark.parametrize(("command", "build", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(files, command, build, names, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stderr = run_entry(command, build(files))
    assert "Traceback" not in stderr, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert code == 2 and len(errors) == 1, stderr[-2000:]
    line = errors[0]
    assert line.startswith(f"medsft.{command}: error: "), line
    for name in names:
        assert name in line, f"{name!r} not in: {line}"


def test_matrix_has_at_least_sixty_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_matrix_runs_as_a_real_command(files):
    """A case found once the data is read, through ``python -m`` (the in-process runner calls the same entry point;
    a recipe refused while it is parsed goes through ``python -m`` in tests/test_train.py)."""
    argv = train(files, "--dataset_name", files["latin1"])
    proc = subprocess.run([sys.executable, "-m", "medsft.train", *argv], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "latin1.json" in proc.stderr.strip().splitlines()[-1]


def test_accepted_inputs_with_drops_say_how_many(files, tmp_path, monkeypatch, caplog):
    """What is accepted with drops is counted where the user looks: the load report and the run manifest."""
    from transformers import AutoTokenizer

    from medsft.configs.training import MedScriptArguments
    from medsft.data.mixture import load_sft_datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # max_length cuts the whole answer of most PubMedQA examples: accepted only when asked, and counted
    out = tmp_path / "pubmedqa-256"
    argv = [str(ROOT / "recipes/pubmedqa_lora.yaml"), "--model_name_or_path", files["tiny"], "--dataset_name",
            str(PUBMEDQA_DIR), "--dataset_format", "instruction", "--max_length", "256", "--max_truncated_share",
            "0.9", "--max_steps", "1", "--output_dir", str(out), "--eval_strategy", "no", "--save_strategy", "no",
            "--load_best_model_at_end", "false"]  # fmt: skip
    code, stderr = run_entry("train", argv)
    assert code == 0, stderr[-2000:]
    manifest = json.loads((out / "run_manifest.json").read_text())["dataset"]
    # independently: an instruction example loses its whole answer when its prompt alone fills max_length
    tokenizer = AutoTokenizer.from_pretrained(files["tiny"])
    train = load_sft_datasets(MedScriptArguments(dataset_name=str(PUBMEDQA_DIR), dataset_format="instruction"))
    prompts_too_long = sum(len(tokenizer(r["prompt"])["input_ids"]) >= 256 for r in train.splits["train"])
    assert manifest["answer_cut_away_dropped"] == prompts_too_long > 300
    assert manifest["train_examples"] == 450 - prompts_too_long
    assert f"dropped {prompts_too_long} of 450 training examples whose whole answer" in caplog.text

    # a loader's drops: an empty answer and an exact duplicate, counted in the load report of the manifest
    rows = json.loads(WIKIDOC_JSON.read_text())[:30]
    data = tmp_path / "wikidoc_drops.json"
    data.write_text(json.dumps([*rows, rows[0], {**rows[1], "output": " "}]))
    out = tmp_path / "wikidoc-drops"
    code, stderr = run_entry("train", train_args_for(files, data, out))
    assert code == 0, stderr[-2000:]
    (source,) = json.loads((out / "run_manifest.json").read_text())["dataset"]["sources"]
    assert source["read"] == 32 and sum(source["dropped"].values()) == 2 and source["kept"] == 30


def train_args_for(files, data, out):
    return [RECIPE, "--model_name_or_path", files["tiny"], "--dataset_name", str(data), "--output_dir", str(out),
            "--max_length", "128", "--max_steps", "1", "--per_device_train_batch_size", "2",
            "--gradient_accumulation_steps", "1"]  # fmt: skip
