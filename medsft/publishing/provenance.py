"""Where a published model came from: its training datasets (Hub ids where known), their licences, the GGUF file of
its base, and the recipe rewritten so a reader can rerun it from the Hub."""

from __future__ import annotations

import re
from pathlib import Path

from medsft.core.errors import MedsftError
from medsft.data import clinical_notes
from medsft.data.registry import SPECS, dataset_type_for, hub_id_for


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
        config = SPECS[kind].hub_config if kind in SPECS and hub_id else None
        name = f"{hub_id} ({config})" if config else hub_id or Path(path).name
        out.append({"name": name, "hub_id": hub_id, "type": kind})
    return out


def _explicit_type(kind: str, given: str | None, hub_id: str) -> str | None:
    """The dataset type a rerun from ``hub_id`` must name: ``kind`` when the Hub id alone would be read as another
    dataset (a local ``ori_pqaa.json`` was recognised by its name; ``qiaojin/PubMedQA`` alone is PQA-L)."""
    if (given or "auto") != "auto" or kind not in SPECS:
        return None
    return kind if dataset_type_for(hub_id, "auto") != kind else None


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
                if kind := _explicit_type(dataset["type"], entry.get("type"), dataset["hub_id"]):
                    entry["type"] = kind
            entries.append(entry)
        out["datasets"] = entries
    elif recipe.get("dataset_name") and datasets and datasets[0]["hub_id"]:
        if recipe["dataset_name"] != datasets[0]["hub_id"]:
            out["dataset_name"] = datasets[0]["hub_id"]
            notes.append(f"dataset_name: read from the local copy '{Path(recipe['dataset_name']).name}'")
            if kind := _explicit_type(datasets[0]["type"], recipe.get("dataset_type"), datasets[0]["hub_id"]):
                out["dataset_type"] = kind
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
