"""Training and validation loss curves of a medsft run, from the Trainer's log history.

```bash
python bench/plot_training.py runs/pubmedqa_lora_smollm2 --out docs/img/pubmedqa_lora_smollm2_loss.png
```
Reads ``trainer_state.json`` of the run's last checkpoint (``log_history``: ``loss`` every ``logging_steps``,
``eval_loss`` at every evaluation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def log_history(run_dir: Path) -> list[dict]:
    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1]))
    if (run_dir / "trainer_state.json").is_file():
        states.append(run_dir / "trainer_state.json")
    if not states:
        raise SystemExit(f"{run_dir}: no trainer_state.json (was a checkpoint saved?)")
    return json.loads(states[-1].read_text())["log_history"]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    history = log_history(Path(args.run_dir))
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    if train:
        ax.plot(*zip(*train), marker="o", markersize=3, label="training loss")
    if evals:
        ax.plot(*zip(*evals), marker="s", color="tab:red", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(Path(args.run_dir).name)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"{len(train)} training and {len(evals)} validation points -> {args.out}")


if __name__ == "__main__":
    main()
