"""The run directory's ``loss_curve.png``: training and validation loss against the optimizer step.

Written by ``medsft.train`` at the end of every run (resumed runs included: the Trainer's ``log_history`` carries
the steps before the checkpoint), and by ``bench/plot_training.py`` for any run or checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from medsft.core.figures import fitted_title
from medsft.data.io import read_json
from medsft.run_dir.checkpoints import TRAINER_STATE_FILE, checkpoints

LOSS_CURVE_FILE = "loss_curve.png"


def read_log_history(run_dir: Path) -> list[dict]:
    """The Trainer's ``log_history`` of a run: its own ``trainer_state.json``, else its newest checkpoint's."""
    for where in (Path(run_dir), *checkpoints(run_dir)):
        if (where / TRAINER_STATE_FILE).is_file():
            return read_json(where / TRAINER_STATE_FILE, what="Trainer state").get("log_history", [])
    return []


def plot_loss_curve(log_history: list[dict], path: Path, title: str) -> tuple[int, int]:
    """Draw training loss (every logged step) and validation loss (every evaluation) into ``path``.

    Parameters:
        log_history: the Trainer's ``state.log_history`` (``loss`` at logged steps, ``eval_loss`` at evaluations).
        path: the PNG to write.
        title: the figure's title (the run's name, base model and data).

    Returns:
        How many training and validation points were drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    if train:
        steps = f"{len(train)} logged step" + "s" * (len(train) != 1)
        ax.plot(*zip(*train), marker="o", markersize=3, label=f"training loss ({steps})")
    if evals:
        evaluations = f"{len(evals)} evaluation" + "s" * (len(evals) != 1)
        ax.plot(*zip(*evals), marker="s", color="tab:red", label=f"validation loss ({evaluations})")
    if not train and not evals:
        ax.text(0.5, 0.5, "no loss was logged", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(fitted_title(title, fig.get_figwidth(), 9), fontsize=9)
    if train or evals:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return len(train), len(evals)
