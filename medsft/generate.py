"""Base vs fine-tuned continuations side by side: the seed notebooks' comparison, for any run directory.

Usage:

```bash
python -m medsft.generate runs/clinical_notes_lora --prompt "Patient presents with fever and a persistent cough"
python -m medsft.generate runs/wikidoc_qlora_smollm2 \\
    --prompt "What are the symptoms of asthma?" "How is type 2 diabetes treated?" --max_new_tokens 96
# offline, when the run was trained from a local model that has moved:
python -m medsft.generate runs/x \\
    --model_name_or_path ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
```

The base model is the one the run recorded (or ``--model_name_or_path``), loaded as the run trained on
it: a QLoRA run's adapter is compared on the same 4-bit NF4 base (``--load_in_4bit false`` for a float32 one). Runs
trained in the ``chat`` format get the prompt as a user turn through the run's chat template; other formats get the
prompt text as is, so write it the way the training data looked (e.g. "Patient presents with …" for clinical
notes). Decoding is greedy unless ``--do_sample`` is given (then seeded), so the comparison is repeatable.
"""

from __future__ import annotations

import sys

import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from medsft.configs import GenerateArguments, parse_args
from medsft.configs.training import MedModelConfig
from medsft.core.errors import MedsftError, run_cli
from medsft.core.memory import return_freed_memory
from medsft.modeling.adapters import base_precision, check_adapter_base, load_adapter, read_adapter
from medsft.modeling.loading import fit_embeddings, load_model, weights_read_not_mapped
from medsft.modeling.source import resolve_model_source
from medsft.run_dir.record import read_run


def _continue(model, tokenizer, text: str, args: GenerateArguments) -> str:
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    set_seed(args.seed)
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=args.max_new_tokens,
            do_sample=args.do_sample,
            temperature=args.temperature if args.do_sample else None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def compare(args: GenerateArguments) -> list[dict]:
    """``[{prompt, base, fine_tuned}]`` for each prompt."""
    if not args.prompt:  # the command line first, then the run directory
        raise MedsftError("give at least one --prompt")
    run = read_run(args.run_dir)
    run_dir = run.path
    source = resolve_model_source(args.model_name_or_path or run.model_name_or_path, run.get("gguf_cache_dir"))
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        if run.dataset_format == "chat"
        else p
        for p in args.prompt
    ]
    is_adapter = run.is_adapter
    if args.load_in_4bit and not is_adapter:
        raise MedsftError(
            f"{run_dir} holds a full fine-tuned model, not an adapter: --load_in_4bit applies to adapters"
        )
    if not args.allow_base_mismatch and (is_adapter or run.is_full_model):
        trained_on = read_adapter(str(run_dir), full_model_ok=True)
        if trained_on.base_name:  # another model, or other weights under the same name, is refused
            check_adapter_base(trained_on, source)
    # An adapter is only what it learned on top of the base it was trained with: a QLoRA adapter on a float32 base is
    # a different model (at 135M parameters NF4 alone moves WikiDoc perplexity from 16.9 to 21.8).
    in_4bit = is_adapter and (run.load_in_4bit if args.load_in_4bit is None else args.load_in_4bit)
    model_args = MedModelConfig(
        model_name_or_path=source.path,
        dtype="float32",
        load_in_4bit=in_4bit,
        use_peft=is_adapter,
        bnb_4bit_quant_type=run["bnb_4bit_quant_type"],
        use_bnb_nested_quant=run["use_bnb_nested_quant"],
    )
    base = load_model(source, model_args, for_training=False).eval()
    precision = base_precision(in_4bit, model_args.bnb_4bit_quant_type, model_args.use_bnb_nested_quant, "float32")
    if is_adapter:
        # the rule medsft.evaluate follows too, stated in the output
        precision += ", as --load_in_4bit asked" if args.load_in_4bit is not None else ", as the run was trained"
        tuned = load_adapter(base, str(run_dir)).eval()
        with tuned.disable_adapter():
            base_out = [_continue(tuned, tokenizer, t, args) for t in texts]
        tuned_out = [_continue(tuned, tokenizer, t, args) for t in texts]
    else:  # a full fine-tune: the run directory holds the whole model
        fit_embeddings(base, len(tokenizer))
        base_out = [_continue(base, tokenizer, t, args) for t in texts]
        del base
        with weights_read_not_mapped():
            tuned = AutoModelForCausalLM.from_pretrained(run_dir, dtype=torch.float32).eval()
        tuned_out = [_continue(tuned, tokenizer, t, args) for t in texts]
    return [
        {"prompt": p, "base": b, "fine_tuned": f, "base_precision": precision}
        for p, b, f in zip(args.prompt, base_out, tuned_out, strict=True)
    ]


def main(argv: list[str] | None = None, console: Console | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--run_dir", argv[0], *argv[1:]]
    args, _ = parse_args(
        (GenerateArguments,), argv, prog="medsft.generate", doc=__doc__,
        usage='medsft.generate RUN_DIR --prompt "..." ["..." ...] [--flag value ...]',
    )  # fmt: skip
    return_freed_memory()  # freed tensor memory back to the system (glibc on Linux)
    results = compare(args)
    precision = results[0]["base_precision"]
    console = console or Console()
    # a line of its own: as the table's title it was wrapped to the table's width, mid-phrase
    console.print(f"[bold]{args.run_dir}[/bold]: base ({precision}) vs fine-tuned", soft_wrap=True)
    table = Table(show_lines=True)
    for column in ("prompt", "base", "fine-tuned"):
        table.add_column(column, ratio=1, overflow="fold")
    for row in results:
        table.add_row(row["prompt"], row["base"], row["fine_tuned"])
    console.print(table)
    return results


def cli() -> None:
    run_cli(main, "medsft.generate")


if __name__ == "__main__":
    cli()
