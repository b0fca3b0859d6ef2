"""The model card of a published medsft run: Hugging Face metadata (``huggingface_hub.ModelCardData``, with a
``model-index`` built from the evaluation report, never invented) and a body that says what the model is, what it
was trained on, how well it did, how to load it, and what it must not be used for.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from medsft.data import SPECS, clinical_notes, dataset_type_for, hub_id_for
from medsft.errors import MedsftError

NOT_A_MEDICAL_DEVICE = (
    "**Not a medical device.** This model is a research artefact for studying fine-tuning on medical text. It is "
    "not a medical device, has not been clinically validated, and must not be used for diagnosis, treatment "
    "decisions, triage or any other clinical purpose, nor as a substitute for a qualified health professional."
)


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


def eval_results(report: dict | None, label: str | None) -> list[EvalResult]:
    """``model-index`` entries for the model ``label`` of an evaluation report (none without a report)."""
    if not report or label not in report.get("results", {}):
        return []
    results, settings = report["results"][label], report.get("settings") or {}
    out = []
    if "pubmedqa" in results:
        scores, task = results["pubmedqa"], settings.get("pubmedqa") or {}
        common = {
            "task_type": "question-answering",
            "task_name": f"PubMedQA yes/no/maybe ({task.get('mode', 'loglikelihood')} scoring)",
            "dataset_type": "qiaojin/PubMedQA",
            "dataset_name": "PubMedQA (PQA-L)",
            "dataset_config": "pqa_labeled",
            "dataset_split": task.get("split", "test"),
        }
        out.append(
            EvalResult(metric_type="accuracy", metric_name="Accuracy", metric_value=scores["accuracy"], **common)
        )
        out.append(EvalResult(metric_type="f1", metric_name="Macro-F1", metric_value=scores["macro_f1"], **common))
    if "perplexity" in results:
        task = settings.get("perplexity") or {}
        dataset = task.get("hub_id") or task.get("dataset") or "local"
        out.append(
            EvalResult(
                task_type="text-generation",
                task_name=f"Perplexity ({task.get('format', '')} format)",
                dataset_type=dataset,
                dataset_name=dataset.split("/")[-1],
                dataset_split=task.get("split", "validation"),
                metric_type="perplexity",
                metric_name="Perplexity",
                metric_value=results["perplexity"]["perplexity"],
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
        lines.append("| PubMedQA accuracy | " + " | ".join(f"{s['accuracy']:.3f}" for s in p) + " |")
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
        lines.append(
            f"| perplexity ({perplexity.get('hub_id') or perplexity['dataset']}, {perplexity['split']}) | "
            + " | ".join(f"{s['perplexity']:.3f}" for s in q)
            + " |"
        )
        lines.append("| bits per byte | " + " | ".join(f"{s['bits_per_byte']:.4f}" for s in q) + " |")
    notes = []
    if pubmedqa:
        baseline = results["base"]["pubmedqa"]["majority_baseline"]
        notes.append(
            f"PubMedQA: {pubmedqa['questions']} questions of the `{pubmedqa['split']}` split, `{pubmedqa['mode']}` "
            f'scoring; always answering "{baseline["label"]}" scores {baseline["accuracy"]:.3f}.'
        )
    if perplexity:
        notes.append(
            f"Perplexity: token-weighted, over the loss-carrying tokens of the `{perplexity['format']}` format, "
            f"{results[label]['perplexity']['tokens']} tokens."
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
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows if v is not None) + "\n"


def _data_section(datasets: list[dict], manifest: dict) -> str:
    sources = (manifest.get("dataset") or {}).get("sources") or []
    licenses = (manifest.get("dataset") or {}).get("licenses") or []
    lines = ["| dataset | licence | read | train / validation | dropped |", "|---|---|---|---|---|"]
    for i, d in enumerate(datasets):
        source = sources[i] if i < len(sources) else {}
        license_ = SPECS[d["type"]].license if d["type"] in SPECS else "see the dataset"
        link = f"[{d['name']}](https://huggingface.co/datasets/{d['hub_id']})" if d["hub_id"] else d["name"]
        splits = source.get("splits") or {}
        dropped = ", ".join(f"{n} {why}" for why, n in (source.get("dropped") or {}).items()) or "none"
        lines.append(
            f"| {link} | {license_} | {source.get('read', '')} | {splits.get('train', '')} / "
            f"{splits.get('validation', '—')} | {dropped} |"
        )
    text = "\n".join(lines) + "\n"
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
) -> ModelCard:
    """The card for ``repo_id``. ``report_label`` is this model's column in the evaluation ``report``."""
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
    body = f"""
# {name}

{what}

> {NOT_A_MEDICAL_DEVICE}

## Training data

{_data_section(datasets, manifest)}
## Training procedure

Trained with `accelerate launch -m medsft.train recipe.yaml`; `recipe.yaml` in this repository holds every setting
(local paths replaced by their names).

{_hyperparameters(recipe, manifest, adapter_config)}
## Evaluation

{_evaluation_section(report, report_label)}
## How to use

{usage}
{prompt_note}

## Limitations

- {NOT_A_MEDICAL_DEVICE}
- A small language model fine-tuned on a small amount of data: it produces fluent text that can be wrong,
  outdated or invented (hallucinated), with no indication of which. Nothing it says has been checked by a clinician.
- English only. The training data (see above) reflect their sources' coverage and biases; populations,
  conditions and practices that are rare in them are handled worse.
- Benchmark numbers (PubMedQA, perplexity) measure agreement with a research dataset, not clinical safety or
  usefulness.
"""
    return ModelCard("---\n" + data.to_yaml() + "\n---\n" + body)
