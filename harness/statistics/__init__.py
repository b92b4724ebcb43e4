"""Seed statistics shared by the trick verdicts and the nightly regression gate.

Pure functions of numbers (numpy/scipy/statsmodels only), one job per file:

* ``intervals``  - seed noise pooled over a model's cells; row-vs-parent t-intervals;
  Welch-Satterthwaite for sums of per-cell variances;
* ``verdicts``   - reproduced / contradicted / no effect / undecided vs the paper;
* ``power``      - minimum detectable effect and seeds needed;
* ``moderated``  - per-cell variances shrunk toward the model's (Smyth 2004);
* ``pooling``    - one trick's delta pooled over models (fixed effect, Q, I2);
* ``sequential`` - Lan-DeMets alpha-spending bounds for adding seeds look by look;
* ``gate``       - one-sided drop with a magnitude floor, speed change, Holm.
"""
from __future__ import annotations

from .gate import (DROP_OUTCOMES, Drop, SpeedChange, family_wise, one_sided_drop,
                   regressions, speed_change)
from .intervals import (Interval, Noise, diff_interval, finite_values, interval_at, pooled_noise,
                        satterthwaite, within_sd)
from .moderated import CellVariance, Prior, fit_prior, moderated, pair_noise
from .pooling import Pooled, pooled_effect
from .power import mde, seeds_needed
from .sequential import (SPENDING_KINDS, alpha_spent, look_fractions, nominal_level,
                         spending_bounds)
from .verdicts import VERDICT_NAMES, Verdict, classify

__all__ = [
    "Noise", "Interval", "finite_values", "pooled_noise", "diff_interval", "interval_at",
    "satterthwaite", "within_sd",
    "VERDICT_NAMES", "Verdict", "classify",
    "CellVariance", "Prior", "fit_prior", "moderated", "pair_noise",
    "mde", "seeds_needed",
    "Pooled", "pooled_effect",
    "SPENDING_KINDS", "alpha_spent", "look_fractions", "spending_bounds", "nominal_level",
    "DROP_OUTCOMES", "Drop", "SpeedChange", "family_wise", "speed_change",
    "one_sided_drop", "regressions",
]
