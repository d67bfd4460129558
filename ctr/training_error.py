"""The error that stops training, importable without torch."""


class TrainingError(RuntimeError):
    """Training cannot go on: the loss diverged or validation is undefined."""
