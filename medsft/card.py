"""The model card of a published medsft run: Hugging Face metadata (``huggingface_hub.ModelCardData``, with a
``model-index`` built from the evaluation report, never invented) and a body that says what the model is, what it
was trained on, how well it did, how to load it, and what it must not be used for.
"""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from medsft.data import SPECS, clinical_notes, dataset_type_for, hub_id_for
from medsft.errors import MedsftError

NOT_A_MEDICAL_DEVICE = (
    "**Not a medical device.** This model is a research artefact for studying fine-tuning on medical text. It is "
    "not a medical device, has not been clinically validated, and must not be used for diagnosis, treatment "
    "decisions, triage or any other clinical purpose, nor as a substitute for a qualified health professional."
)


def licence_text(base_model: str, recipe: dict) -> str:
    """``LICENSE.md`` for ``license: other``: the base model's licence and each training dataset's apply."""
    lines = [
        "# Licence",
        "",
        "This model is derived from a base model and trained on data, whose licences apply to it:",
        "",
        f"- Base model: [{base_model}](https://huggingface.co/{base_model}): see its model card for its licence.",
    ]
    for d in training_datasets(recipe):
        license_ = SPECS[d["type"]].license if d["type"] in SPECS else "see the dataset"
        link = f"[{d['name']}](https://huggingface.co/datasets/{d['hub_id']})" if d["hub_id"] else d["name"]
        lines.append(f"- Training data: {link}: {license_}.")
    return "\n".join(lines) + "\n"


def training_datasets(recipe: dict) -> list[dict]:
    """Each training dataset of the recipe: the name shown, its Hub id (when one exists) and its medsft type."""
    entries = recipe.get("datasets") or [{"path": recipe.get("dataset_name"), "type": recipe.get("dataset_type")}]
    out = []
    for entry in entries:
        path, kind = entry.get("path") or "", entry.get("type") or "auto"
        if kind == "clinical_notes" or (not path and recipe.get("dataset_type") == "clinical_notes"):
            out.append({"name": clinical_notes.NAME, "hub_id": None, "type": "clinical_notes"})
            continue
        try:
            kind = dataset_type_for(path, kind)
        except MedsftError:
            pass  # an unrecognised local dataset: shown by its folder name, with no Hub id
        hub_id = hub_id_for(path, kind)
        out.append({"name": hub_id or Path(path).name, "hub_id": hub_id, "type": kind})
    return out


def subset(task: dict, count: str, total: str) -> tuple[int, int] | None:
    """``(scored, in split)`` when an evaluation scored only part of its split (``--limit``), else None."""
    n, of = task.get(count), task.get(total)
    return (n, of) if n is not None and of is not None and n < of else None


def _split_name(split: str, part: tuple[int, int] | None) -> str:
    return f"{split}[:{part[0]}]" if part else split


def _of(part: tuple[int, int] | None, what: str) -> str:
    return f" (subset: first {part[0]} of {part[1]} {what})" if part else ""


# Recipe keys that name local files only this machine has; a published recipe leaves them to their defaults
_LOCAL_ONLY_KEYS = ("gguf_cache_dir", "pubmedqa_reference", "pubmedqa_test_file")


def rerunnable_recipe(recipe: dict, base_model: str) -> tuple[dict, list[str]]:
    """The recipe as a reader reruns it: Hub ids for the base model and the datasets where they are known, keys that
    name local-only files left to their defaults. Returns it and notes on what was replaced (local names only)."""
    out, notes = dict(recipe), []
    local_model = recipe.get("model_name_or_path")
    if local_model and local_model != base_model:
        out["model_name_or_path"] = base_model
        notes.append(f"model_name_or_path: trained from the local copy '{Path(local_model).name}'")
    datasets = training_datasets(recipe)
    if recipe.get("datasets"):
        entries = []
        for entry, dataset in zip(recipe["datasets"], datasets):
            if dataset["hub_id"] and entry.get("path") != dataset["hub_id"]:
                notes.append(
                    f"datasets: {dataset['hub_id']} was read from the local copy '{Path(entry['path']).name}'"
                )
                entry = {**entry, "path": dataset["hub_id"]}
            entries.append(entry)
        out["datasets"] = entries
    elif recipe.get("dataset_name") and datasets and datasets[0]["hub_id"]:
        if recipe["dataset_name"] != datasets[0]["hub_id"]:
            out["dataset_name"] = datasets[0]["hub_id"]
            notes.append(f"dataset_name: read from the local copy '{Path(recipe['dataset_name']).name}'")
    for key in _LOCAL_ONLY_KEYS:
        if key in out:
            notes.append(f"{key}: a local path here ('{Path(str(out.pop(key))).name}'), left to its default")
    return out, notes


def gguf_provenance(manifest: dict) -> str | None:
    """Which GGUF file the base weights came from (trained and evaluated on its dequantized weights), or None."""
    model = manifest.get("model") or {}
    if not model.get("gguf_sha256"):
        return None
    name = Path(model.get("name") or "").name
    quant = re.search(r"\.((?:I?Q\d[\w]*?)|F16|BF16|F32)\.gguf$", name, re.IGNORECASE)
    return (
        f"The base model's weights were read from the GGUF file `{name}`"
        + (f" ({quant.group(1).upper()} quantization)" if quant else "")
        + f", sha256 `{model['gguf_sha256']}`, dequantized to float: the adapter was trained and evaluated on those "
        "weights, which differ slightly from the original checkpoint's."
    )


def eval_results(report: dict | None, label: str | None) -> list[EvalResult]:
    """``model-index`` entries for the model ``label`` of an evaluation report (none without a report). A subset
    (``--limit``) is marked in the split (``test[:100]``) and the metric name; values are rounded to 4 digits."""
    if not report or label not in report.get("results", {}):
        return []
    results, settings = report["results"][label], report.get("settings") or {}
    out = []
    if "pubmedqa" in results:
        scores, task = results["pubmedqa"], settings.get("pubmedqa") or {}
        part = subset(task, "questions", "questions_in_split")
        common = {
            "task_type": "question-answering",
            "task_name": f"PubMedQA yes/no/maybe ({task.get('mode', 'loglikelihood')} scoring)",
            "dataset_type": "qiaojin/PubMedQA",
            "dataset_name": "PubMedQA (PQA-L)",
            "dataset_config": "pqa_labeled",
            "dataset_split": _split_name(task.get("split", "test"), part),
        }
        questions = _of(part, "questions")
        out.append(
            EvalResult(
                metric_type="accuracy",
                metric_name=f"Accuracy{questions}",
                metric_value=round(scores["accuracy"], 4),
                **common,
            )
        )
        out.append(
            EvalResult(
                metric_type="f1",
                metric_name=f"Macro-F1{questions}",
                metric_value=round(scores["macro_f1"], 4),
                **common,
            )
        )
    if "perplexity" in results:
        task = settings.get("perplexity") or {}
        part = subset(task, "texts", "texts_in_split")
        dataset = task.get("hub_id") or task.get("dataset") or "local"
        out.append(
            EvalResult(
                task_type="text-generation",
                task_name=f"Perplexity ({task.get('format', '')} format)",
                dataset_type=dataset,
                dataset_name=dataset.split("/")[-1],
                dataset_split=_split_name(task.get("split", "validation"), part),
                metric_type="perplexity",
                metric_name=f"Perplexity{_of(part, 'texts')}",
                metric_value=round(results["perplexity"]["perplexity"], 4),
            )
        )
    return out


def _evaluation_section(report: dict | None, label: str | None) -> str:
    if not report or label not in report.get("results", {}):
        return (
            "No evaluation report was published with this model. To measure it against its base model:\n\n"
            "```bash\npython -m medsft.evaluate --model_name_or_path BASE --adapters THIS_ADAPTER\n```\n"
        )
    results, settings = report["results"], report.get("settings") or {}
    columns = ["base", label]
    lines = ["| metric | base model | this model |", "|---|---|---|"]
    pubmedqa = settings.get("pubmedqa")
    if pubmedqa and all("pubmedqa" in results[c] for c in columns):
        p = [results[c]["pubmedqa"] for c in columns]
        questions = _of(subset(pubmedqa, "questions", "questions_in_split"), "questions")
        lines.append(f"| PubMedQA accuracy{questions} | " + " | ".join(f"{s['accuracy']:.3f}" for s in p) + " |")
        lines.append(
            "| 95% bootstrap CI | "
            + " | ".join(f"{s['accuracy_ci95'][0]:.3f}–{s['accuracy_ci95'][1]:.3f}" for s in p)
            + " |"
        )
        lines.append("| PubMedQA macro-F1 | " + " | ".join(f"{s['macro_f1']:.3f}" for s in p) + " |")
        if all(s.get("yes_no_auc") is not None for s in p):  # older reports and generate mode lack it
            lines.append(
                "| yes-vs-no ranking AUC (0.5 = chance) | " + " | ".join(f"{s['yes_no_auc']:.3f}" for s in p) + " |"
            )
        paired = p[1].get("vs_base")
        if paired:  # older reports lack it
            low, high = paired["difference_ci95"]
            lines.append(
                f"| accuracy change vs base, paired 95% CI | | {paired['accuracy_difference']:+.3f} "
                f"({low:+.3f} to {high:+.3f}); {paired['fixed']} answers fixed, {paired['broken']} broken, "
                f"McNemar p = {paired['mcnemar_p']:.2g} |"
            )
        lines.append(
            "| predicted yes / no / maybe | "
            + " | ".join(" / ".join(str(v) for v in s["prediction_distribution"].values()) for s in p)
            + " |"
        )
    perplexity = settings.get("perplexity")
    if perplexity and all("perplexity" in results[c] for c in columns):
        q = [results[c]["perplexity"] for c in columns]
        texts = _of(subset(perplexity, "texts", "texts_in_split"), "texts")
        lines.append(
            f"| perplexity ({perplexity.get('hub_id') or perplexity['dataset']}, {perplexity['split']}){texts} | "
            + " | ".join(f"{s['perplexity']:.3f}" for s in q)
            + " |"
        )
        lines.append("| bits per byte | " + " | ".join(f"{s['bits_per_byte']:.4f}" for s in q) + " |")
    notes = []
    if pubmedqa:
        baseline = results["base"]["pubmedqa"]["majority_baseline"]
        part = subset(pubmedqa, "questions", "questions_in_split")
        notes.append(
            f"PubMedQA: {pubmedqa['questions']} questions of the `{pubmedqa['split']}` split"
            + (f" (**a subset**: the first {part[0]} of {part[1]})" if part else "")
            + f', `{pubmedqa["mode"]}` scoring; always answering "{baseline["label"]}" scores '
            f"{baseline['accuracy']:.3f}."
        )
    if perplexity:
        part = subset(perplexity, "texts", "texts_in_split")
        notes.append(
            f"Perplexity: token-weighted, over the loss-carrying tokens of the `{perplexity['format']}` format, "
            f"{results[label]['perplexity']['tokens']} tokens"
            + (f" of **a subset**: the first {part[0]} of the split's {part[1]} texts." if part else ".")
        )
    notes.append(
        f"Measured by `medsft.evaluate` on {report.get('finished', '')[:10]}; the full report is in "
        "`eval/report.json`."
    )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _hyperparameters(recipe: dict, manifest: dict, adapter_config: dict | None) -> str:
    rows = []
    if adapter_config:
        method = "QLoRA (4-bit NF4 base)" if (manifest.get("model") or {}).get("load_in_4bit") else "LoRA"
        targets = adapter_config.get("target_modules")
        targets = ", ".join(sorted(targets)) if isinstance(targets, list) else targets
        rows += [
            ("method", method),
            (
                "LoRA rank / alpha / dropout",
                " / ".join(str(adapter_config.get(k)) for k in ("r", "lora_alpha", "lora_dropout")),
            ),
            ("LoRA target modules", targets),
        ]
    else:
        rows.append(("method", "full fine-tuning"))
    for key in (
        "dataset_format", "learning_rate", "lr_scheduler_type", "num_train_epochs", "max_steps",
        "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "packing", "seed",
    ):  # fmt: skip
        if key in recipe:
            rows.append((key, recipe[key]))
    rows += [
        ("training steps", manifest.get("global_step")),
        ("processes", manifest.get("world_size")),
        ("final training loss", manifest.get("final_train_loss")),
    ]
    versions = manifest.get("versions") or {}
    rows.append(("library versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)))
    shown = [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in rows if v is not None]
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in shown) + "\n"


def _consumed(recipe: dict, manifest: dict) -> str | None:
    """What training actually consumed of the split sizes above: steps, effective batch, epochs."""
    steps = manifest.get("global_step")
    if not steps:
        return None
    batch = (
        int(recipe.get("per_device_train_batch_size", 8))
        * int(recipe.get("gradient_accumulation_steps", 1))
        * int(manifest.get("world_size") or 1)
    )
    unit = "packed rows of up to max_length tokens" if recipe.get("packing") else "examples"
    epochs = manifest.get("epochs")
    return (
        f"Training consumed {steps} optimizer steps × an effective batch of {batch} {unit}"
        + (f": {epochs:.3g} epochs of the {manifest['dataset'].get('train_examples')} training examples." if epochs
           and manifest.get("dataset") else ".")
    )  # fmt: skip


def _data_section(datasets: list[dict], manifest: dict, recipe: dict) -> str:
    sources = (manifest.get("dataset") or {}).get("sources") or []
    licenses = (manifest.get("dataset") or {}).get("licenses") or []
    lines = ["| dataset | licence | read | train / validation | dropped |", "|---|---|---|---|---|"]
    checks = []
    for i, d in enumerate(datasets):
        source = sources[i] if i < len(sources) else {}
        license_ = SPECS[d["type"]].license if d["type"] in SPECS else "see the dataset"
        link = f"[{d['name']}](https://huggingface.co/datasets/{d['hub_id']})" if d["hub_id"] else d["name"]
        splits = source.get("splits") or {}
        dropped = ", ".join(f"{n} {why}" for why, n in (source.get("dropped") or {}).items()) or "none"
        checked = source.get("decontamination") or {}
        if checked.get("overlapping_rows") is not None:
            checks.append(
                f"{d['name']}: {checked['overlapping_rows']} training rows overlap the {checked.get('test_set')}"
            )
        elif checked:
            checks.append(f"{d['name']}: **not checked** against the PubMedQA test set ({checked.get('not_checked')})")
        lines.append(
            f"| {link} | {license_} | {source.get('read', '')} | {splits.get('train', '')} / "
            f"{splits.get('validation', '—')} | {dropped} |"
        )
    text = "\n".join(lines) + "\n"
    if checks:
        text += (
            "\nDecontamination (PubMedQA official test set: PMIDs, questions, 13-gram overlaps): "
            + "; ".join(checks)
            + ".\n"
        )
    consumed = _consumed(recipe, manifest)
    if consumed:
        text += f"\n{consumed}\n"
    if licenses:
        text += f"\nThe data's licences ({', '.join(licenses)}) apply to what this model learned from them.\n"
    return text


def build_card(
    *,
    repo_id: str,
    base_model: str,
    recipe: dict,
    manifest: dict,
    adapter_config: dict | None,
    report: dict | None,
    report_label: str | None,
    license: str,  # noqa: A002 - the metadata field's name
    merged: bool,
    tokenizer_included: bool,
    added_tokens: list[str],
    plots: tuple[str, ...] = (),
    recipe_notes: tuple[str, ...] = (),
) -> ModelCard:
    """The card for ``repo_id``. ``report_label`` is this model's column in the evaluation ``report``; ``plots``
    the evaluation figures shipped in the folder (paths relative to it); ``recipe_notes`` what ``recipe.yaml``
    replaced to be rerunnable. With ``license="other"`` the card links ``LICENSE.md`` (``licence_text``)."""
    datasets = training_datasets(recipe)
    qlora = bool((manifest.get("model") or {}).get("load_in_4bit"))
    tags = ["medical", "medsft", "trl", "sft", "lora" if adapter_config else "full-fine-tune"]
    if qlora:
        tags.append("qlora")
    if merged:
        tags.append("merged")
    data = ModelCardData(
        base_model=base_model,
        library_name="transformers" if merged or not adapter_config else "peft",
        pipeline_tag="text-generation",
        license=license,
        license_name="base-model-and-training-data-licences" if license == "other" else None,
        license_link="LICENSE.md" if license == "other" else None,
        language=["en"],
        datasets=[d["hub_id"] for d in datasets if d["hub_id"]] or None,
        tags=tags,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(report, report_label) or None,
    )
    name = repo_id.split("/")[-1]
    data_names = ", ".join(d["name"] for d in datasets)
    if merged:
        what = (
            f"This is [{base_model}](https://huggingface.co/{base_model}) with a LoRA adapter trained by "
            f"medsft merged into its weights"
            + (
                " (merged into the base loaded in 32-bit, not into the 4-bit weights the adapter was trained on)"
                if qlora
                else ""
            )
            + f", fine-tuned (supervised, TRL `SFTTrainer`) on {data_names}."
        )
        usage = (
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n```\n'
        )
    else:
        what = (
            f"A {'QLoRA' if qlora else 'LoRA'} adapter for [{base_model}](https://huggingface.co/{base_model}), "
            f"fine-tuned (supervised, TRL `SFTTrainer`) with medsft on {data_names}."
        )
        tokenizer_from = repo_id if tokenizer_included else base_model
        resize = "base.resize_token_embeddings(len(tokenizer))  # the adapter adds tokens\n" if added_tokens else ""
        usage = (
            "```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{base_model}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{tokenizer_from}")\n{resize}'
            f'model = PeftModel.from_pretrained(base, "{repo_id}")\n```\n'
        )
    fmt = recipe.get("dataset_format", "chat")
    prompt_note = {
        "chat": "Prompt it through the tokenizer's chat template (`apply_chat_template`), as it was trained.",
        "instruction": "Prompt it with plain text in the recipe's instruction format (see `recipe.yaml`).",
        "text": "It was trained as a plain language model on the text (no prompt format).",
        "special_tokens": f"Prompt it as `<question> … <answer>`; it ends answers with `<end>` (added tokens: "
        f"{', '.join(added_tokens)}).",
    }.get(fmt, "")
    provenance = gguf_provenance(manifest)
    figures = "".join(f"\n![{Path(plot).stem}]({plot})\n" for plot in plots)
    replaced = "".join(f"\n- {note}" for note in recipe_notes)
    if replaced:
        replaced = "\nTo be rerunnable from the Hub, it differs from the run's own recipe here:" + replaced + "\n"
    body = f"""
# {name}

{what}
{f"{chr(10)}{provenance}{chr(10)}" if provenance else ""}
> {NOT_A_MEDICAL_DEVICE}

## Training data

{_data_section(datasets, manifest, recipe)}
## Training procedure

Trained with `accelerate launch -m medsft.train recipe.yaml`; `recipe.yaml` in this repository holds every setting
given, and reruns as it is (`accelerate launch -m medsft.train recipe.yaml`).
{replaced}
{_hyperparameters(recipe, manifest, adapter_config)}
## Evaluation

{_evaluation_section(report, report_label)}{figures}
## How to use

{usage}
{prompt_note}

## Limitations

- Not a medical device (see above).
- A small language model fine-tuned on a small amount of data: it produces fluent text that can be wrong,
  outdated or invented (hallucinated), with no indication of which. Nothing it says has been checked by a clinician.
- English only. The training data (see above) reflect their sources' coverage and biases; populations,
  conditions and practices that are rare in them are handled worse.
- Benchmark numbers (PubMedQA, perplexity) measure agreement with a research dataset, not clinical safety or
  usefulness.
"""
    return ModelCard("---\n" + data.to_yaml() + "\n---\n" + body)
