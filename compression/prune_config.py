"""What gradual structured pruning aims for, and the choices it accepts.

Kept apart from :mod:`compression.prune` and free of torch, so that the command
line can offer these choices and defaults without loading the model code.
"""

from dataclasses import dataclass

NORMS = ("l1", "l2")
SCHEDULES = ("agp", "one-shot")
ROW_CRITERIA = ("norm", "frequency", "impact")


@dataclass(frozen=True)
class PruneConfig:
    """Targets of gradual structured pruning.

    Attributes:
        neuron_sparsity: final share of each hidden layer's neurons removed.
        row_sparsity: final share of vocabulary rows folded into oov.
        dim_sparsity: final share of embedding dimensions removed (the same
            dimensions in every field, with the MLP inputs that read them).
        steps: prune → fine-tune rounds (ignored by the one-shot schedule).
        schedule: "agp" (cubic ramp) or "one-shot".
        norm: "l1" or "l2" importance.
        row_criterion: how vocabulary rows are ranked: "norm" by the norm of
            their weights, "frequency" by how often training rows look them
            up, "impact" by the product of the two (a row's total weight in
            the training logits), which never folds a frequent value.
        cutoff_share: share of ``max_auc_drop`` that the frequency cut-off may
            spend before the schedule starts: values seen too rarely in
            training are folded into oov, at the highest count that keeps
            validation AUC within it. 0 skips the cut-off.
        neuron_threshold: λ mode: when set, neurons whose importance is at
            most this are removed in one step, instead of a target sparsity.
        row_threshold: λ mode for vocabulary rows, likewise.
        fine_tune_epochs: training epochs after each pruning step.
        fine_tune_lr_scale: fine-tuning learning rates as a share of training's;
            a smaller step keeps the pruned model near its trained weights.
        max_auc_drop: largest validation AUC loss accepted against the start.
            On 1,250 validation rows (the real sample's split) a paired AUC
            difference spreads about ±0.005, so there a budget below that
            mostly measures noise; larger data can hold tighter budgets.
    """

    neuron_sparsity: float = 0.875
    row_sparsity: float = 0.75
    dim_sparsity: float = 0.5
    steps: int = 4
    schedule: str = "agp"
    norm: str = "l2"
    row_criterion: str = "impact"
    cutoff_share: float = 0.5
    neuron_threshold: float | None = None
    row_threshold: float | None = None
    fine_tune_epochs: int = 2
    fine_tune_lr_scale: float = 0.3
    max_auc_drop: float = 0.002

    def __post_init__(self) -> None:
        for name in ("neuron_sparsity", "row_sparsity", "dim_sparsity"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}: expected a share in [0, 1), got {value}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule: expected one of {SCHEDULES}, got {self.schedule!r}"
            )
        if self.row_criterion not in ROW_CRITERIA:
            raise ValueError(
                f"row_criterion: expected one of {ROW_CRITERIA}, "
                f"got {self.row_criterion!r}"
            )
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps: expected an integer >= 1, got {self.steps!r}")
        if not isinstance(self.fine_tune_epochs, int) or self.fine_tune_epochs < 1:
            raise ValueError(
                f"fine_tune_epochs: expected an integer >= 1, "
                f"got {self.fine_tune_epochs}"
            )
        for name in ("neuron_threshold", "row_threshold"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name}: expected a threshold >= 0, got {value}")
        if isinstance(self.cutoff_share, bool) or not 0 <= self.cutoff_share <= 1:
            raise ValueError(
                f"cutoff_share: expected a share in [0, 1], got {self.cutoff_share}"
            )
        if not 0 < self.fine_tune_lr_scale <= 1:
            raise ValueError(
                "fine_tune_lr_scale: expected a share in (0, 1], "
                f"got {self.fine_tune_lr_scale}"
            )
        if not self.max_auc_drop >= 0:
            raise ValueError(f"max_auc_drop: expected >= 0, got {self.max_auc_drop}")
