"""Supervised fine-tuning of a causal LM on medical text, from a recipe.

Usage:

```bash
# a recipe, as shipped (downloads gpt2 and WikiDoc from the Hub)
accelerate launch -m medsft.train recipes/wikidoc_qlora.yaml

# flags override the recipe; every TRL SFT/model flag keeps its name
accelerate launch -m medsft.train recipes/wikidoc_qlora.yaml --learning_rate 1e-4 --max_steps 50

# offline: a local model directory or .gguf file and a local data file
accelerate launch -m medsft.train recipes/wikidoc_qlora_smollm2.yaml \\
    --model_name_or_path ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --dataset_name ../shared/data/wikidoc_patient_information/medical_meadow_wikidoc_patient_information.json \\
    --max_steps 5 --output_dir runs/smollm2-try

# several GPUs (see accelerate_configs/README.md for the others)
accelerate launch --config_file accelerate_configs/multi_gpu.yaml -m medsft.train recipes/wikidoc_qlora.yaml

# continue an interrupted run from its last complete checkpoint (same recipe and flags as the first launch)
accelerate launch -m medsft.train recipes/wikidoc_qlora.yaml --resume_from_checkpoint true

# stop a running run cleanly: it saves the step it is on as a checkpoint, then exits (status 3); resume as above
touch runs/wikidoc_qlora/STOP

# start over: deletes the earlier run in output_dir (a medsft run only), once every other check has passed
accelerate launch -m medsft.train recipes/wikidoc_qlora.yaml --overwrite_output_dir true
```
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import EarlyStoppingCallback, TrainerCallback, set_seed
from trl import SFTTrainer, is_conversational

from medsft.configs import PushArguments
from medsft.configs.parser import parse_args
from medsft.configs.training import MedDatasetMixtureConfig, MedModelConfig, MedScriptArguments, MedSFTConfig
from medsft.core.environment import (
    describe_device,
    git_commit,
    library_versions,
    now,
    warn_if_one_cpu_thread,
    warn_if_slow_cpu_bf16,
)
from medsft.core.errors import MedsftError, RunStopped, disk_full_errors, run_cli, sigterm_as_interrupt
from medsft.core.hub_access import require_hub_for
from medsft.core.memory import return_freed_memory
from medsft.core.noise import silence_packed_attention_mask_notice
from medsft.core.paths import is_hub_id
from medsft.data.lengths import truncation
from medsft.data.mixture import load_sft_datasets
from medsft.modeling.frozen_16bit import store_frozen_embeddings_16bit
from medsft.modeling.loading import (
    add_special_tokens,
    fit_embeddings,
    keep_adapter_float32,
    load_model,
    load_tokenizer,
)
from medsft.modeling.lora import build_lora_config, scale_adapter
from medsft.modeling.packing import (
    apply_packed_layout,
    choose_packed_layout,
    set_attention,
    warn_if_dense_packed_attention,
)
from medsft.modeling.sharding import (
    check_sharding_engaged,
    deepspeed_requested,
    fsdp_on_cpu,
    fsdp_requested,
    gather_for_final_save,
    launch_checkpoint_layout,
)
from medsft.modeling.source import check_max_length, resolve_model_source
from medsft.modeling.trainer import (
    FullLogitsSFTTrainer,
    LogFinalStep,
    MedsftSFTTrainer,
    ResumeWithTheseSettings,
    choose_loss_head,
)
from medsft.publishing.hub import check_repo_id, check_token
from medsft.push import push
from medsft.run_dir.checkpoints import (
    best_checkpoint,
    checkpoint_state,
    last_complete_checkpoint,
    resumed_from_label,
)
from medsft.run_dir.loss_curve import LOSS_CURVE_FILE, plot_loss_curve
from medsft.run_dir.output_dir import clear_output_dir, plan_output_dir, readme_left_as_it_was
from medsft.run_dir.record import write_manifest, write_recipe, write_run_config
from medsft.run_dir.resume import check_checkpoint_layout, check_resume
from medsft.run_dir.stop import STOPPED_EXIT, StopOnRequest

logger = logging.getLogger("medsft.train")


def main(argv: list[str] | None = None, callbacks: list[TrainerCallback] | None = None) -> SFTTrainer:
    script_args, training_args, model_args, mixture, explicit_keys = parse_args(
        (MedScriptArguments, MedSFTConfig, MedModelConfig, MedDatasetMixtureConfig),
        argv,
        prog="medsft.train",
        doc=__doc__,
    )
    state = PartialState()
    logging.basicConfig(
        format="%(asctime)s %(name)s: %(message)s", level=logging.INFO if state.is_main_process else logging.WARNING
    )
    warn_if_one_cpu_thread(state.num_processes, logger)
    warn_if_slow_cpu_bf16(training_args.bf16, training_args.use_cpu, logger)
    if training_args.return_freed_memory:
        return_freed_memory()  # freed tensor memory back to the system (glibc on Linux): half the CPU peak
    started = now()
    set_seed(training_args.seed)

    ###############
    # Output directory: refuse, or pick the checkpoint to resume from (nothing is deleted or written yet)
    ###############
    plan = plan_output_dir(
        training_args.output_dir, training_args.resume_from_checkpoint, training_args.overwrite_output_dir, logger
    )
    if plan.finished_step is not None:
        logger.warning(
            "nothing to resume: the run in %s finished at step %s; nothing was changed (to train further, resume one "
            "of its checkpoints into a new --output_dir)",
            training_args.output_dir,
            plan.finished_step,
        )
        return None
    # The Trainer pickles its arguments into training_args.bin of the run and of every checkpoint: a token given as
    # --hub_token is kept in memory only, for the upload at the end.
    hub_token, training_args.hub_token = training_args.hub_token, None

    ###############
    # Model source and LoRA targets: checked on the module tree before any weights are loaded
    ###############
    datasets_named = [script_args.dataset_name, *(entry.path for entry in (mixture.datasets or []))]
    require_hub_for([model_args.model_name_or_path, *datasets_named])
    source = resolve_model_source(model_args.model_name_or_path, model_args.gguf_cache_dir)
    check_max_length(source, training_args.max_length, model_args.model_revision)
    push_to = _publishing(training_args, source, state, hub_token)
    peft_config = build_lora_config(model_args, source.path)
    if peft_config is not None:
        logger.info("LoRA targets %s (fan_in_fan_out=%s)", peft_config.target_modules, peft_config.fan_in_fan_out)
    elif ignored := sorted(
        k for k in explicit_keys if k.startswith("lora_") or k in ("use_rslora", "use_dora", "adapter_strength")
    ):
        # a warning, not an error: "--use_peft false" on a LoRA recipe is a deliberate full fine-tune
        logger.warning("%s set but not used: use_peft is false, so every weight is trained", ", ".join(ignored))
    resume_changes = {}
    if plan.resume_from:
        check_checkpoint_layout(plan.resume_from, launch_checkpoint_layout(training_args))
        resume_changes = check_resume(
            plan, source, peft_config, explicit_keys, script_args, training_args, model_args, mixture
        )
    if resume_changes:
        logger.warning(
            "resuming %s with settings that differ from its recipe.yaml (recorded in the manifest): %s",
            plan.resume_from,
            ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in resume_changes.items()),
        )

    ###############
    # Load data (cleaned, split, checked against the PubMedQA test set, formatted)
    ###############
    data = load_sft_datasets(script_args, mixture, seed=training_args.seed)
    datasets = data.splits
    train_dataset = datasets["train"]
    if script_args.max_train_samples is not None and script_args.max_train_samples < len(train_dataset):
        train_dataset = train_dataset.shuffle(seed=training_args.seed).select(range(script_args.max_train_samples))
    eval_dataset = datasets.get("validation") if training_args.eval_strategy != "no" else None

    ###############
    # Load tokenizer
    ###############
    tokenizer = load_tokenizer(
        source, model_args.model_revision, need_chat_template=is_conversational(train_dataset[0])
    )
    token_ids = add_special_tokens(tokenizer, data.special_tokens) if data.special_tokens else []
    train_dataset, cut = _drop_cut_answers(train_dataset, tokenizer, training_args, script_args, "training")
    if eval_dataset is not None:
        eval_dataset, _ = _drop_cut_answers(eval_dataset, tokenizer, training_args, None, "validation")
    logger.info(
        "data %s | training on %d examples; %d longer than max_length=%s are truncated (%d of them lose part of "
        "their answer; %d that lost all of it were dropped)",
        data.summary(),
        len(train_dataset),
        cut.longer,
        training_args.max_length,
        cut.completion_cut,
        len(cut.completion_lost),
    )

    ###############
    # Load model
    ###############
    model = load_model(source, model_args, gradient_checkpointing=training_args.gradient_checkpointing)
    if token_ids:
        fit_embeddings(model, len(tokenizer))
        if peft_config is not None:
            # peft trains (and saves with the adapter) only these rows of the embedding, tied output head included,
            # instead of modules_to_save copying the whole embedding matrix.
            peft_config.trainable_token_indices = token_ids
        logger.info("added special tokens %s (ids %s)", list(data.special_tokens), token_ids)

    ###############
    # Train
    ###############
    on_gpu = torch.cuda.is_available() and not training_args.use_cpu
    loss_head, why_loss_head = choose_loss_head(
        training_args.loss_head, on_gpu, added_tokens=bool(token_ids) and peft_config is not None
    )
    logger.info("loss head: %s (%s)", loss_head, why_loss_head)
    trainer_class = FullLogitsSFTTrainer if loss_head == "full_logits" else MedsftSFTTrainer
    stop = StopOnRequest(training_args.output_dir)
    early_stopping = None
    if training_args.early_stopping_patience:
        early_stopping = EarlyStoppingCallback(training_args.early_stopping_patience)
        # The Trainer does not carry this count across a resume: each resume would restart the patience
        early_stopping.early_stopping_patience_counter = plan.resume_early_stopping_counter
    run_callbacks = [*(callbacks or []), *([early_stopping] if early_stopping else []), stop]
    with fsdp_on_cpu(training_args):
        trainer = trainer_class(
            model=model,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[LogFinalStep(), *run_callbacks],
        )
    trainer.add_callback(ResumeWithTheseSettings(run_callbacks, trainer))
    check_sharding_engaged(trainer)
    keep_adapter_float32(trainer.model)
    if (
        model_args.load_in_4bit
        and not token_ids
        and not (training_args.bf16 or training_args.fp16)
        and not (fsdp_requested(training_args) or deepspeed_requested(training_args))
    ):
        # QLoRA: the frozen embeddings and LM head bitsandbytes leaves unquantized back in their checkpoint's 16 bits
        # (lossless in float32 compute, the CPU recipes'; not under mixed precision, where it is untested; not under
        # FSDP/DeepSpeed, whose flat parameters want one dtype; not when added tokens train rows of them)
        saved, what = store_frozen_embeddings_16bit(trainer.model)
        if saved:
            logger.info(
                "frozen %s kept in their checkpoint's 16 bits, computed in float32: %.2f GiB less", what, saved / 2**30
            )
    packed_layout, attention_after_training = None, None
    if trainer.padding_free:  # what TRL decided its collator does (padding_free, or BFD packing)
        silence_packed_attention_mask_notice()
        attention = model.config._attn_implementation
        packed_layout, why = choose_packed_layout(training_args.packed_layout, attention, on_gpu=on_gpu)
        warn_if_dense_packed_attention(attention, packed_layout, training_args.per_device_train_batch_size, logger)
        attention_after_training = apply_packed_layout(trainer, packed_layout)
        logger.info("packed layout: %s (%s)", packed_layout, why)
    if state.is_main_process and peft_config is not None:
        trainer.model.print_trainable_parameters()

    # A checkpoint of the run's last step (it stopped before its final save, or the command ends the run there) is the
    # result: the Trainer would train one step more at learning rate 0 (transformers 5.24), or on past where early
    # stopping stopped it; a checkpoint past the last step is refused
    last_step = _last_step(plan, _run_length(trainer, training_args, plan, resume_changes), early_stopping)
    best = best_checkpoint(plan.resume_from) if last_step and training_args.load_best_model_at_end else None

    ###############
    # Every check passed: only now is an overwritten run deleted; the run directory starts with its recipe and a
    # manifest that says it is training (so an interrupted run is recognisable and resumable)
    ###############
    clear_output_dir(plan, logger)
    how_to_continue = partial(_how_to_continue, resumed_from=plan.resume_from)
    manifest = {
        **((plan.previous_manifest or {}) if plan.resume_from else {}),
        "status": "training",
        "medsft_git_commit": git_commit(),
        "versions": library_versions(),
        "seed": training_args.seed,
        "started": (plan.previous_manifest or {}).get("started", started) if plan.resume_from else started,
        "resumed_from": plan.resume_from and resumed_from_label(plan.resume_from, plan.output_dir),
        "resumed_at_step": plan.resume_step,
        "resume_changed_settings": {k: list(v) for k, v in resume_changes.items()} or None,
        "model": {
            "name": source.name,
            "gguf_sha256": source.gguf_sha256,
            "fingerprint": source.fingerprint,
            "load_in_4bit": model_args.load_in_4bit,
        },
        "world_size": state.num_processes,
        "hardware": describe_device(),
        "packed_layout": packed_layout,
        "loss_head": loss_head,
    }
    if trainer.is_world_process_zero():
        configs = (script_args, model_args, training_args, mixture)
        with disk_full_errors(training_args.output_dir, how_to_continue):
            write_recipe(training_args.output_dir, explicit_keys, *configs)
            write_run_config(training_args.output_dir, explicit_keys, *configs)
            write_manifest(training_args.output_dir, manifest)
    if stop.path.exists():
        if trainer.is_world_process_zero():  # one warning, not one per rank
            logger.warning("%s is already there (a stop request): the run stops after its first step", stop.path)
    else:
        logger.info("to stop cleanly, with a checkpoint of the step it is on: touch %s", stop.path)
    with disk_full_errors(training_args.output_dir, how_to_continue):
        if last_step:
            logger.info("%s is %s (%d): saving it as the run's result", plan.resume_from, last_step, plan.resume_step)
            trainer._load_from_checkpoint(plan.resume_from)
            trainer.state = checkpoint_state(plan.resume_from)
            if best:
                trainer.state.best_model_checkpoint = str(best)
                trainer._load_best_model()  # as train() does at its end (load_best_model_at_end)
            result = None
        else:
            try:
                with sigterm_as_interrupt():
                    result = trainer.train(resume_from_checkpoint=plan.resume_from)
            except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM without accelerate's launcher: one line, no traceback
                raise _record_interrupt(
                    trainer, stop, manifest, training_args, str(e) or "Ctrl-C", how_to_continue
                ) from None
        if attention_after_training:  # the saved model and any later use get the usual one
            set_attention(trainer.model, attention_after_training)
        if stop.stopped_early(trainer.state):
            _record_stop(trainer, stop, manifest, training_args, source, data)

    ###############
    # Save adapter (at its adapter_strength)/model, tokenizer and the finished run manifest
    ###############
    with disk_full_errors(training_args.output_dir, how_to_continue):
        gather_for_final_save(trainer)
        if peft_config is not None and model_args.adapter_strength != 1:
            trained, saved = scale_adapter(trainer.model, model_args.adapter_strength)
            logger.info(
                "adapter saved at strength %s: lora_alpha %s (trained at %s; its checkpoints keep that)",
                model_args.adapter_strength,
                saved,
                trained,
            )
        with readme_left_as_it_was(training_args.output_dir, trainer.is_world_process_zero()):
            trainer.save_model(training_args.output_dir)
        if trainer.is_world_process_zero():
            logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
            write_manifest(
                training_args.output_dir,
                {
                    **manifest,
                    "status": "finished",
                    "finished": now(),
                    "dataset": {
                        "sources": [report.to_dict() for report in data.reports],
                        "licenses": data.licenses,
                        "special_tokens": list(data.special_tokens),
                        "format": script_args.dataset_format,
                        "train_examples": len(train_dataset),
                        "longer_than_max_length": cut.longer,
                        "answer_partly_cut_by_max_length": cut.completion_cut,
                        "answer_cut_away_dropped": len(cut.completion_lost),
                    },
                    "global_step": trainer.state.global_step,
                    "epochs": trainer.state.epoch,
                    "train_loss_mean": result.training_loss if result else None,
                    # The Trainer averages the loss over this session's steps only: after a resume, those since the
                    # checkpoint (read when the run started: the checkpoint itself may have been rotated away since)
                    "train_loss_mean_steps": [1 + (plan.resume_step or 0), trainer.state.global_step]
                    if result
                    else None,
                    "final_train_loss": logged[-1] if logged else None,
                },
            )
            if stop.path.exists():  # touched at the last step or during the final save: nothing left to stop
                stop.clear()
                logger.info("removed %s: the run finished before a step could stop on it", stop.path)
            curve = _draw_loss_curve(trainer, training_args, source, data)
            logger.info(
                "saved to %s; loss curve %s%s", training_args.output_dir, curve, _tensorboard_hint(training_args)
            )
            if push_to:
                push(
                    PushArguments(
                        run_dir=training_args.output_dir, repo_id=push_to, private=bool(training_args.hub_private_repo)
                    ),
                    token=hub_token,
                )
    return trainer


def _how_to_continue(output_dir: str, resumed_from: str | None = None) -> str:
    """How a run that ended before its end (a full disk, Ctrl-C) goes on: from its last complete checkpoint (one cut
    short is skipped; after a failed final save, the last step's is saved as the result); from the other run's
    checkpoint it was resuming (``resumed_from``) when it saved none; or over from the start."""
    last = last_complete_checkpoint(output_dir)
    if last:
        return (
            f"continue from {last} with the same command and --resume_from_checkpoint true (from the last complete "
            "checkpoint; a half-written one is skipped)"
        )
    if resumed_from and Path(resumed_from).resolve().parent != Path(output_dir).resolve():
        return f"run the same command again (--resume_from_checkpoint {resumed_from}; this run saved no checkpoint)"
    return "start over with the same command and --overwrite_output_dir true (no checkpoint was complete)"


# Settings that change how many optimizer steps an epoch-based run has
_RUN_LENGTH_SETTINGS = {
    "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "dataloader_drop_last",
}  # fmt: skip


def _run_length(trainer, args: MedSFTConfig, plan, resume_changes: dict) -> tuple[int, str]:
    """The resumed run's last step, and where it comes from: ``--max_steps``; the checkpoint's record when nothing
    changes the length; else the epochs' worth of optimizer steps, counted as transformers'
    ``set_initial_training_values`` counts them (without building the dataloader: accelerate would register it twice).
    """
    if args.max_steps > 0:
        return args.max_steps, f"--max_steps {args.max_steps}"
    if plan.resume_max_steps and not _RUN_LENGTH_SETTINGS & set(resume_changes):
        return plan.resume_max_steps, "the run's length"
    rows, batch = len(trainer.train_dataset), args.per_device_train_batch_size
    batches = rows // batch if args.dataloader_drop_last else math.ceil(rows / batch)
    per_process = batches // args.world_size if args.dataloader_drop_last else math.ceil(batches / args.world_size)
    steps_per_epoch = max(math.ceil(per_process / args.gradient_accumulation_steps), 1)
    last = math.ceil(args.num_train_epochs * steps_per_epoch)
    return last, f"--num_train_epochs {args.num_train_epochs} of {steps_per_epoch} steps"


def _last_step(plan, run_length: tuple[int, str], early_stopping: EarlyStoppingCallback | None) -> str | None:
    """Why the checkpoint to resume is the run's last step ("its last step", "where early stopping stopped it"), or
    None when training goes on from it. A checkpoint past the run's last step is refused: the Trainer trained one
    step more and called the run finished, longer than asked."""
    if not plan.resume_from:
        return None
    last, why = run_length
    if plan.resume_step > last:
        raise MedsftError(
            f"cannot resume {plan.resume_from}: it is at step {plan.resume_step}, past this run's last step ({last}, "
            f"from {why}); pass --max_steps {plan.resume_step} to end the run with that checkpoint's weights, or more "
            "to train on"
        )
    if plan.resume_step == last:
        return "its last step"
    if early_stopping and plan.resume_early_stopping_counter >= early_stopping.early_stopping_patience:
        return "where early stopping stopped it"
    return None


def _record_stop(trainer, stop: StopOnRequest, manifest: dict, training_args, source, data) -> None:
    """A run stopped by ``STOP``: its manifest says so (and at which steps it ever stopped), its loss curve is drawn
    so far, the request is removed; then one line says where the checkpoint is and how to continue."""
    step = trainer.state.global_step
    if trainer.is_world_process_zero():
        stops = [*(manifest.get("stops") or []), {"step": step, "time": now()}]
        stopped = {**manifest, "status": "stopped", "global_step": step, "stops": stops}
        write_manifest(training_args.output_dir, stopped)
        _draw_loss_curve(trainer, training_args, source, data)
        stop.clear()
    trainer.accelerator.wait_for_everyone()
    checkpoint = Path(training_args.output_dir) / f"checkpoint-{step}"
    raise RunStopped(
        f"stopped at step {step} of {trainer.state.max_steps} as {stop.path} asked (removed): saved {checkpoint}; "
        "continue with the same command and --resume_from_checkpoint true",
        STOPPED_EXIT,
    )


def _record_interrupt(
    trainer, stop: StopOnRequest, manifest: dict, training_args, by: str, how_to_continue: Callable[[str], str]
) -> RunStopped:
    """A run interrupted mid-step (Ctrl-C, SIGTERM): its manifest says so; the line to print says which checkpoint a
    resume continues from (the steps since are trained again) and how to stop with a checkpoint next time."""
    step = trainer.state.global_step
    if trainer.is_world_process_zero():
        interruptions = [*(manifest.get("interruptions") or []), {"step": step, "by": by, "time": now()}]
        write_manifest(
            training_args.output_dir,
            {**manifest, "status": "interrupted", "global_step": step, "interruptions": interruptions},
        )
    return RunStopped(
        f"interrupted by {by} after step {step} of {trainer.state.max_steps}: "
        f"{how_to_continue(training_args.output_dir)} (to stop with a checkpoint of "
        f"the step it is on, touch {stop.path} instead)",
        128 + (signal.SIGTERM if by == "SIGTERM" else signal.SIGINT),
    )


def _drop_cut_answers(dataset, tokenizer, training_args, script_args, split: str):
    """Drop (and count) the examples whose whole answer ``max_length`` cuts away: they would train on nothing, with
    loss 0. For training, refuse when more than ``max_truncated_share`` of the examples are such, or all are."""
    splits_overflow = training_args.packing and training_args.packing_strategy in ("bfd_split", "wrapped")
    cut = truncation(dataset, tokenizer, None if splits_overflow else training_args.max_length)
    lost = len(cut.completion_lost)
    if not lost:
        return dataset, cut
    share = lost / len(dataset)
    if lost == len(dataset):
        raise MedsftError(
            f"max_length={training_args.max_length} cuts away the whole answer of every {split} example (the prompt "
            "alone is longer): raise --max_length"
        )
    if script_args is not None and share > script_args.max_truncated_share:
        raise MedsftError(
            f"max_length={training_args.max_length} cuts away the whole answer of {lost} of {len(dataset)} {split} "
            f"examples ({share:.0%}; the prompt alone is longer): raise --max_length, or pass --max_truncated_share "
            f"{min(1.0, round(share + 0.005, 2))} to drop them and train on the rest"
        )
    logger.warning(
        "dropped %d of %d %s examples whose whole answer max_length=%s cuts away", lost, len(dataset), split,
        training_args.max_length,
    )  # fmt: skip
    drop = set(cut.completion_lost)
    return dataset.select([i for i in range(len(dataset)) if i not in drop]), cut


def _publishing(training_args, source, state, token: str | None) -> str | None:
    """With ``--push_to_hub``: check the repo id, base model and token now (not after hours of training), and turn
    the Trainer's own upload off: medsft publishes the finished run with its model card (``medsft.push``)."""
    if not training_args.push_to_hub:
        return None
    repo_id = training_args.hub_model_id or ""
    check_repo_id(repo_id, "--push_to_hub needs --hub_model_id owner/name:")
    if source.path != source.name:  # a local directory or GGUF file
        raise MedsftError(
            f"--push_to_hub: the base model '{source.name}' is local, so the card cannot name its Hub id; train "
            "without --push_to_hub, then run python -m medsft.push RUN_DIR --repo_id ... --base_model HUB_ID"
        )
    if state.is_main_process:
        check_token(token)
    training_args.push_to_hub = False
    return repo_id


def _draw_loss_curve(trainer, training_args, source, data) -> Path:
    """``loss_curve.png`` of the run so far, titled with the run's name, base model and data."""
    datasets = ", ".join(r.source if is_hub_id(r.source) else Path(r.source).name for r in data.reports)
    curve = Path(training_args.output_dir) / LOSS_CURVE_FILE
    plot_loss_curve(
        trainer.state.log_history, curve, f"{Path(training_args.output_dir).name}: {source.name} on {datasets}"
    )
    return curve


def _tensorboard_hint(training_args) -> str:
    if "tensorboard" not in (training_args.report_to or []):
        return ""
    return f"; TensorBoard: tensorboard --logdir {Path(training_args.output_dir) / 'runs'}"


def cli() -> None:
    run_cli(main, "medsft.train")


if __name__ == "__main__":
    cli()
