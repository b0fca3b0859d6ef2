#!/usr/bin/env bash
# medsft's first hour in one command (`make quickstart`, after scripts/setup.sh): QLoRA-train SmolLM2-135M-Instruct on
# WikiDoc for a few steps, evaluate base vs adapter on a small subset of every task, and write the folder
# `medsft.push` would upload (model card included) without uploading anything. Each step says what it made and where.
#
# Data and model: the recipe's Hub ids when the Hugging Face Hub answers; otherwise the offline copies in ../shared
# (or $MEDSFT_SHARED). Sizes: QUICKSTART_STEPS (default 4 optimizer steps) and QUICKSTART_LIMIT (default 20 examples
# per evaluation task); where: QUICKSTART_DIR (default runs/quickstart). Nothing existing is overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN="${QUICKSTART_DIR:-runs/quickstart}"
STEPS="${QUICKSTART_STEPS:-4}"
LIMIT="${QUICKSTART_LIMIT:-20}"
SHARED="${MEDSFT_SHARED:-../shared}"
PY="${MEDSFT_PYTHON:-.venv/bin/python}"   # the tests pass their own interpreter
[ -x "$PY" ] || { echo "quickstart: no .venv here: run 'make quickstart' (it sets up first) or scripts/setup.sh" >&2; exit 2; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
for path in "$RUN" "$RUN-publish"; do
    if [ -e "$path" ]; then
        echo "quickstart: $path exists (an earlier quickstart?); nothing was changed. Remove it to run again" \
             "(rm -r $RUN $RUN-publish), or choose another folder: make quickstart QUICKSTART_DIR=runs/quickstart-2" >&2
        exit 2
    fi
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$(date +%s)

step "1/4 where the model and data come from"
if [ -z "${HF_HUB_OFFLINE:-}" ] && $PY -c "import sys; from medsft.core.hub_access import unreachable_reason as r; sys.exit(r() is not None)"; then
    echo "the Hugging Face Hub answers: the recipe's own Hub ids"
    MODEL=HuggingFaceTB/SmolLM2-135M-Instruct
    WIKIDOC=medalpaca/medical_meadow_wikidoc_patient_information
    PUBMEDQA=qiaojin/PubMedQA; MEDQA=GBaker/MedQA-USMLE-4-options; MMLU=cais/mmlu
    BASE_FLAG=()
elif [ -d "$SHARED/data" ]; then
    echo "no Hub here: the offline copies in $SHARED (the GGUF model is dequantized once into ~/.cache/medsft)"
    MODEL="$SHARED/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    WIKIDOC="$SHARED/data/wikidoc_patient_information"
    PUBMEDQA="$SHARED/data/pubmedqa"; MEDQA="$SHARED/data/medqa"; MMLU="$SHARED/data/mmlu"
    BASE_FLAG=(--base_model HuggingFaceTB/SmolLM2-135M-Instruct)  # the card names the Hub model the GGUF file is
else
    echo "quickstart: the Hub is unreachable and there is no $SHARED/data with offline copies: connect, or set" \
         "MEDSFT_SHARED to a folder laid out like ../shared (README: offline)" >&2
    exit 2
fi

step "2/4 train: recipes/wikidoc_qlora_smollm2.yaml for $STEPS steps (CPU-sized: batch 2 x 512 tokens) -> $RUN"
$PY -m medsft.train recipes/wikidoc_qlora_smollm2.yaml --model_name_or_path "$MODEL" --dataset_name "$WIKIDOC" \
    --output_dir "$RUN" --max_steps "$STEPS" --warmup_steps 0 --max_length 512 --per_device_train_batch_size 2 \
    --gradient_accumulation_steps 1 --save_steps "$STEPS" --disable_tqdm true
echo "made: $RUN (adapter, recipe.yaml, run_config.json, run_manifest.json, loss_curve.png, TensorBoard events in $RUN/runs)"

step "3/4 evaluate base vs adapter on the first $LIMIT examples of each task -> $RUN/eval"
$PY -m medsft.evaluate --model_name_or_path "$MODEL" --adapters "$RUN" --tasks perplexity,pubmedqa,medqa,mmlu \
    --perplexity_dataset "$WIKIDOC" --pubmedqa_dataset "$PUBMEDQA" --medqa_dataset "$MEDQA" --mmlu_dataset "$MMLU" \
    --limit "$LIMIT" --bootstrap_samples 200
echo "made: $RUN/eval (report.json, predictions per task and model, comparison.png, PubMedQA confusion matrices)"

step "4/4 publish, dry run: the folder medsft.push would upload, model card included -> $RUN-publish"
$PY -m medsft.push "$RUN" --repo_id your-name/smollm2-135m-wikidoc-qlora-quickstart "${BASE_FLAG[@]}" \
    --dry_run "$RUN-publish"

step "done in $(( $(date +%s) - started )) s"
cat <<DONE
  $RUN/loss_curve.png             training loss per step        (tensorboard --logdir $RUN/runs for the live view)
  $RUN/eval/comparison.png        base vs adapter, every task, with 95% intervals (a $LIMIT-example subset: a smoke test, not a result)
  $RUN-publish/README.md   the model card that would be published
next:
  $PY -m medsft.generate $RUN --prompt "What are the symptoms of asthma?" --max_new_tokens 48
  the full recipe: README "Train"; real numbers: docs/RESULTS.md
DONE
