"""Training and validation loss curves of a medsft run, from the Trainer's log history.

```bash
python bench/plot_training.py runs/pubmedqa_lora_smollm2 --out docs/img/pubmedqa_lora_smollm2_loss.png
```
``medsft.train`` writes the same figure into every run directory (``loss_curve.png``); this script draws it for a
run or checkpoint elsewhere. Reads ``trainer_state.json`` of the run, or of its newest checkpoint (``log_history``:
``loss`` every ``logging_steps``, ``eval_loss`` at every evaluation). ``--out`` is an image file (.png, .pdf, .svg):
an earlier figure there is redrawn, anything else (an adapter, a report, a folder) is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medsft.core.errors import MedsftError
from medsft.run_dir.loss_curve import plot_loss_curve, read_log_history

IMAGE_SUFFIXES = (".png", ".pdf", ".svg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    if out.suffix.lower() not in IMAGE_SUFFIXES or out.is_dir():
        raise SystemExit(f"--out {out}: not an image file name ({', '.join(IMAGE_SUFFIXES)}); nothing was written")
    try:
        history = read_log_history(Path(args.run_dir))
    except MedsftError as e:  # a malformed or unreadable trainer_state.json: the line names it
        raise SystemExit(str(e)) from None
    if not history:
        raise SystemExit(f"{args.run_dir}: no trainer_state.json (was a checkpoint saved?)")
    train, evals = plot_loss_curve(history, out, Path(args.run_dir).name)
    print(f"{train} training and {evals} validation points -> {out}")


if __name__ == "__main__":
    main()
