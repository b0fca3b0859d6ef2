"""``python -m medsft.preview``: look at the training data exactly as the model will see it, before training.

Usage:

```bash
python -m medsft.preview recipes/pubmedqa_lora.yaml --dataset_name ../shared/data/pubmedqa \\
    --model_name_or_path ../shared/models/gpt2-tokenizer
python -m medsft.preview recipes/medquad_gpt2.yaml --dataset_name ../shared/data/medquad --num_examples 2
```

Shows N formatted examples token by token (special tokens boxed, trained tokens highlighted, the rest dimmed), the
token-length distribution, the share cut at ``max_length``, and the loader's kept/dropped counts with reasons.
Only the tokenizer is loaded (a directory with just tokenizer files is enough).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from trl import is_conversational

from medsft.configs import PreviewArguments, parse_args
from medsft.configs.training import MedDatasetMixtureConfig, MedModelConfig, MedScriptArguments, MedSFTConfig
from medsft.core.errors import MedsftError, run_cli
from medsft.data.lengths import token_lengths, tokenize_for_training, truncation
from medsft.data.mixture import load_sft_datasets
from medsft.modeling.loading import DEFAULT_CHAT_TEMPLATE, add_special_tokens, load_tokenizer
from medsft.modeling.source import ModelSource, resolve_model_source


def render_tokens(ids: list[int], trained: list[bool], tokenizer, max_length: int | None) -> Text:
    """Token-by-token text: trained tokens bold green, context dimmed, special tokens boxed, cut-off struck out."""
    special = set(tokenizer.all_special_ids)
    out = Text()
    for i, (token_id, loss) in enumerate(zip(ids, trained, strict=True)):
        piece = tokenizer.decode([token_id])
        style = "bold green" if loss else "dim"
        if token_id in special:
            piece, style = f"[{piece}]", style + " reverse"
        if max_length is not None and i >= max_length:
            style += " strike"
        out.append(piece, style=style)
    return out


def length_table(lengths: list[int], max_length: int | None) -> Table:
    table = Table(title="Token lengths (as tokenized for training)")
    for column in ("examples", "min", "median", "p90", "p99", "max", f"> max_length={max_length}"):
        table.add_column(column, justify="right")
    ordered = sorted(lengths)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    over = sum(n > max_length for n in lengths) if max_length else 0
    table.add_row(
        str(len(lengths)),
        str(ordered[0]),
        str(int(statistics.median(ordered))),
        str(pct(0.9)),
        str(pct(0.99)),
        str(ordered[-1]),
        f"{over} ({100 * over / len(lengths):.1f}%)",
    )
    return table


def histogram(lengths: list[int], bins: int = 10, width: int = 40) -> Text:
    low, high = min(lengths), max(lengths)
    step = max(1, -(-(high - low + 1) // bins))
    counts = [0] * bins
    for n in lengths:
        counts[min(bins - 1, (n - low) // step)] += 1
    out = Text()
    for b, count in enumerate(counts):
        bar = "█" * round(width * count / max(counts))
        out.append(f"{low + b * step:>6}-{low + (b + 1) * step - 1:<6} {bar} {count}\n")
    return out


def main(argv: list[str] | None = None, console: Console | None = None) -> dict:
    """Print the preview; returns what it showed (for tests): lengths, over, reports and the examples' token masks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "preview":
        argv = argv[1:]
    script_args, training_args, model_args, mixture, preview_args, _ = parse_args(
        (MedScriptArguments, MedSFTConfig, MedModelConfig, MedDatasetMixtureConfig, PreviewArguments),
        argv,
        prog="medsft.preview",
        doc=__doc__,
    )
    console = console or Console()
    data = load_sft_datasets(script_args, mixture, seed=training_args.seed)
    if preview_args.split not in data.splits:
        raise MedsftError(f"there is no {preview_args.split} split (validation_size is 0?)")
    dataset = data.splits[preview_args.split]

    name = model_args.model_name_or_path
    if name and Path(name).is_dir():  # a directory with only tokenizer files is enough here
        path = name
    else:
        path = resolve_model_source(name, model_args.gguf_cache_dir).path
    conversational = is_conversational(dataset[0])
    if Path(path, "vocab.json").is_file() and not Path(path, "tokenizer_config.json").is_file():
        # GPT-2's original release layout (vocab.json + merges.txt, no tokenizer config), as in ../shared
        from transformers import GPT2TokenizerFast

        tokenizer = GPT2TokenizerFast.from_pretrained(path)
        if conversational:
            tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    else:
        tokenizer = load_tokenizer(ModelSource(path=path, name=path), model_args.model_revision, conversational)
    if data.special_tokens:
        add_special_tokens(tokenizer, data.special_tokens)

    max_length = training_args.max_length
    console.rule(f"[bold]{preview_args.split}: {len(dataset)} examples")
    for report in data.reports:
        console.print(report.summary())
        if report.skipped_files:
            console.print(f"  files without rows: {report.skipped_files}")
        if report.decontamination:
            console.print(f"  decontamination: {report.decontamination}")
    shown = []
    for i in range(min(preview_args.num_examples, len(dataset))):
        ids, trained = tokenize_for_training(dataset[i], tokenizer)
        shown.append((ids, trained))
        title = f"example {i}: {len(ids)} tokens, {sum(trained)} trained"
        console.print(Panel(render_tokens(ids, trained, tokenizer, max_length), title=title))
    console.print(
        "[dim]legend:[/] [bold green]trained[/] [dim]context[/] [reverse]special[/] [strike]cut at max_length[/]"
    )
    lengths = token_lengths(dataset, tokenizer)
    console.print(length_table(lengths, max_length))
    console.print(histogram(lengths))
    cut = truncation(dataset, tokenizer, max_length)
    console.print(
        f"max_length={max_length}: {len(cut.completion_lost)} examples lose their whole answer (training drops them), "
        f"{cut.completion_cut} lose part of it"
    )
    return {
        "lengths": lengths,
        "over": sum(n > max_length for n in lengths) if max_length else 0,
        "answer_cut_away": len(cut.completion_lost),
        "answer_partly_cut": cut.completion_cut,
        "reports": data.reports,
        "shown": shown,
    }


def cli() -> None:
    run_cli(main, "medsft.preview")


if __name__ == "__main__":
    cli()
