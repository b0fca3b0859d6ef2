"""medsft.core.paths: the one "Hub id or local path?" rule."""

from __future__ import annotations

from medsft.core.paths import is_hub_id, looks_local


def test_hub_ids_and_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", "qiaojin/PubMedQA"):
        assert is_hub_id(name) and not looks_local(name), name
    (tmp_path / "runs" / "x").mkdir(parents=True)
    for name in (
        "runs/x",  # exists here: a local folder even though it is shaped like owner/name
        "./model", "../shared/models/gpt2", "/abs/path", "~/models/m",  # path-shaped
        "data/wikidoc.json", "m/model.gguf", "recipe.yaml",  # file names, even when missing
        "a/b/c",  # more than owner/name: huggingface_hub's validation refuses it
        "",
    ):  # fmt: skip
        assert not is_hub_id(name) and looks_local(name), name
