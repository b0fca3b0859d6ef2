"""The model card of a published medsft run: Hugging Face metadata (``huggingface_hub.ModelCardData``, with a
``model-index`` built from the evaluation report, never invented) and a body that says what the model is, what it
was trained on, how well it did, how to load it, and what it must not be used for.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from medsft.data.registry import SPECS
from medsft.evaluation.schema import EvalReport
from medsft.publishing.card_evaluation import eval_results, evaluation_section
from medsft.publishing.provenance import gguf_provenance, training_datasets
from medsft.run_dir.record import Run

NOT_A_MEDICAL_DEVICE = (
    "**Not a medical device.** This model is a research artefact for studying fine-tuning on medical text. It is "
    "not a medical device, has not been clinically validated, and must not be used for diagnosis, treatment "
    "decisions, triage or any other clinical purpose, nor as a substitute for a qualified health professional."
)


def _hyperparameters(run: Run, adapter_config: dict | None) -> str:
    manifest = run.manifest
    rows = []
    if adapter_config:
        quant = str(run.get("bnb_4bit_quant_type", "nf4")).upper()
        method = f"QLoRA (4-bit {quant} base)" if run.load_in_4bit else "LoRA"
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
        strength = run.get("adapter_strength") or 1
        if strength != 1:  # the saved alpha above is the trained one times the strength
            rows.append(
                (
                    "adapter strength",
                    f"{strength:g} (the trained update, lora_alpha {run.get('lora_alpha')}, scaled to lora_alpha "
                    f"{adapter_config.get('lora_alpha')} when saved)",
                )
            )
    else:
        rows.append(("method", "full fine-tuning"))
    for key in (
        "dataset_format", "learning_rate", "lr_scheduler_type", "num_train_epochs", "max_steps",
        "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "packing", "seed",
    ):  # fmt: skip
        value = run.get(key)
        if (key == "max_steps" and value == -1) or (key == "num_train_epochs" and (run.get("max_steps") or -1) > 0):
            continue  # the one of the two that did not bound the run
        rows.append((key, value))
    rows += [
        ("training steps", manifest.get("global_step")),
        ("processes", manifest.get("world_size")),
        ("final training loss", manifest.get("final_train_loss")),
    ]
    versions = manifest.get("versions") or {}
    rows.append(("library versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)))
    shown = [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in rows if v is not None]
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in shown) + "\n"


def _consumed(run: Run) -> str | None:
    """What training actually consumed of the split sizes above: steps, effective batch, epochs."""
    manifest = run.manifest
    steps = manifest.get("global_step")
    if not steps:
        return None
    batch = (
        int(run["per_device_train_batch_size"])
        * int(run["gradient_accumulation_steps"])
        * int(manifest.get("world_size") or 1)
    )
    unit = "packed rows of up to max_length tokens" if run.get("packing") else "examples"
    epochs = manifest.get("epochs")
    return (
        f"Training consumed {steps} optimizer steps × an effective batch of {batch} {unit}"
        + (f": {epochs:.3g} epochs of the {manifest['dataset'].get('train_examples')} training examples." if epochs
           and manifest.get("dataset") else ".")
    )  # fmt: skip


def _data_section(datasets: list[dict], run: Run) -> str:
    manifest = run.manifest
    sources = (manifest.get("dataset") or {}).get("sources") or []
    licenses = (manifest.get("dataset") or {}).get("licenses") or []
    lines = ["| dataset | licence | read | train / validation | dropped |", "|---|---|---|---|---|"]
    checks, repeats = [], []
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
        for name, entry in (checked.get("benchmarks") or {}).items():
            if entry.get("overlapping_rows") is not None:
                checks.append(
                    f"{d['name']}: {entry['overlapping_rows']} training rows overlap the {entry['test_set']}"
                )
            else:
                checks.append(f"{d['name']}: **not checked** against {name} ({entry.get('not_checked')})")
        train = f"{splits.get('train', '')}"
        repeated = source.get("repeated") or {}
        if repeated:
            train += f" (incl. {sum(repeated.values())} copies)"
            repeats.append(f"{d['name']}: " + ", ".join(f"{n} {why}" for why, n in repeated.items()))
        lines.append(
            f"| {link} | {license_} | {source.get('read', '')} | {train} / {splits.get('validation', '—')} "
            f"| {dropped} |"
        )
    text = "\n".join(lines) + "\n"
    if checks:
        text += (
            "\nDecontamination (PubMedQA official test set: PMIDs, questions, 13-gram overlaps): "
            + "; ".join(checks)
            + ".\n"
        )
    if repeats:
        text += "\nTraining rows repeated (oversampling; validation untouched): " + "; ".join(repeats) + ".\n"
    consumed = _consumed(run)
    if consumed:
        text += f"\n{consumed}\n"
    if licenses:
        text += f"\nThe data's licences ({', '.join(licenses)}) apply to what this model learned from them.\n"
    return text


def build_card(
    *,
    repo_id: str,
    base_model: str,
    run: Run,
    adapter_config: dict | None,
    report: EvalReport | None,
    report_label: str | None,
    license: str,  # noqa: A002 - the metadata field's name
    merged: bool,
    tokenizer_included: bool,
    added_tokens: list[str],
    plots: tuple[str, ...] = (),
    recipe_notes: tuple[str, ...] = (),
    datasets: list[dict] | None = None,
) -> ModelCard:
    """The card for ``repo_id`` of the training ``run`` (``read_run``; local paths already scrubbed).

    ``report_label`` is this model's column in the evaluation ``report``; ``plots``
    the evaluation figures shipped in the folder (paths relative to it); ``recipe_notes`` what ``recipe.yaml``
    replaced to be rerunnable; ``datasets`` the training datasets (``training_datasets`` of the run before its paths
    were scrubbed: a scrubbed folder name like ``pubmedqa`` no longer says where it came from). With
    ``license="other"`` the card links ``LICENSE.md`` (``licence_text``)."""
    datasets = training_datasets(run.arguments) if datasets is None else datasets
    qlora = run.load_in_4bit
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
    fmt = run.dataset_format
    prompt_note = {
        "chat": "Prompt it through the tokenizer's chat template (`apply_chat_template`), as it was trained.",
        "instruction": "Prompt it with plain text in the recipe's instruction format (see `recipe.yaml`).",
        "text": "It was trained as a plain language model on the text (no prompt format).",
        "special_tokens": f"Prompt it as `<question> … <answer>`; it ends answers with `<end>` (added tokens: "
        f"{', '.join(added_tokens)}).",
    }.get(fmt, "")
    provenance = gguf_provenance(run.manifest)
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

{_data_section(datasets, run)}
## Training procedure

Trained with `accelerate launch -m medsft.train recipe.yaml`; `recipe.yaml` in this repository holds every setting
given, and reruns as it is (`accelerate launch -m medsft.train recipe.yaml`).
{replaced}
{_hyperparameters(run, adapter_config)}
## Evaluation

{evaluation_section(report, report_label)}{figures}
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
