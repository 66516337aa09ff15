"""The learning-rate schedule both trainers use: linear warm-up, then a cosine down to 2% of the peak.

A factor of the optimiser's learning rate for ``torch.optim.lr_scheduler.LambdaLR``.  The floor of 2%
keeps the last steps learning a little instead of stopping dead.
"""
from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Factor of the peak learning rate at ``step`` of ``total`` (the first ``warmup`` steps ramp up)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
