"""The run's log: log.csv, TensorBoard scalars when it is installed, and training_curves.png."""

from __future__ import annotations

import csv
from pathlib import Path

from .losses import LOSS_KEYS


class RunLog:
    """CSV of every logged step, TensorBoard when installed, and training_curves.png on demand (rank 0 only)."""

    FIELDS = ("epoch", "iter", "lr", *LOSS_KEYS, "img_s", "ap", "ap50", "val_loss")

    def __init__(self, out: Path, resume: bool):
        self.out = out
        self.csv_path = out / "log.csv"
        new = not (resume and self.csv_path.exists())
        self.file = open(self.csv_path, "w" if new else "a", newline="")
        self.writer = csv.DictWriter(self.file, self.FIELDS)
        if new:
            self.writer.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # tensorboard is optional; the CSV and the PNG always exist
            self.tb = None

    def write(self, row: dict, step: int) -> None:
        self.writer.writerow({k: row.get(k, "") for k in self.FIELDS})
        self.file.flush()
        if self.tb:
            for k, v in row.items():
                if k not in ("epoch", "iter") and v != "":
                    self.tb.add_scalar(k, v, step)

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with open(self.csv_path) as f:
            rows = list(csv.DictReader(f))
        steps = [r for r in rows if r["total_loss"]]
        evals = [r for r in rows if r["ap"]]
        x = [float(r["epoch"]) + float(r["iter"]) for r in steps]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for key in LOSS_KEYS[:5]:
            axes[0].plot(x, [float(r[key]) for r in steps], label=key)
        validated = [r for r in evals if r.get("val_loss")]  # a log resumed from before it was measured has none
        axes[0].plot([float(r["epoch"]) for r in validated], [float(r["val_loss"]) for r in validated], "ko-",
                     label="validation loss (no aug, no L1)")
        axes[0].set(title="losses", xlabel="epoch", yscale="log")
        axes[0].legend()
        axes[1].plot(x, [float(r["lr"]) for r in steps])
        axes[1].set(title="learning rate", xlabel="epoch")
        axes[2].plot([float(r["epoch"]) for r in evals], [float(r["ap"]) for r in evals], "o-", label="AP50:95")
        axes[2].plot([float(r["epoch"]) for r in evals], [float(r["ap50"]) for r in evals], "o-", label="AP50")
        axes[2].set(title="COCO AP (EMA model)", xlabel="epoch")
        axes[2].legend()
        fig.tight_layout()
        fig.savefig(self.out / "training_curves.png", dpi=80)
        plt.close(fig)

    def close(self) -> None:
        self.file.close()
        if self.tb:
            self.tb.close()
