"""Statistical analyses of stored trials (factorial effects, leave-one-out drops)."""
from harness.analysis.designs import design_section, factorial_effects, label_trials, loo_drops

__all__ = ["design_section", "factorial_effects", "label_trials", "loo_drops"]
