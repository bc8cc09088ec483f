"""When a particle flow is done: the stopping rule on the evaluated divergence (issue #11).

The flow is evaluated every ``eval_every`` steps by S_k, the debiased Sinkhorn divergence of the
particles to fresh target samples (never trained on). Its sampling floor S_floor is the same
divergence between two fresh target sets: no sampler scores reliably below it, so further steps
cannot be seen to help. After each evaluation k the rule answers

* ``"converged"`` when S_k ≤ S_floor (the particles are as close as fresh target samples), or when
  the divergence has stalled after having moved: the last ``patience`` evaluations improved the
  best earlier value by less than the fraction ``rtol``,
  min(S_{k−patience+1..k}) > (1 − rtol) · min(S_0..S_{k−patience}),
  while that best earlier value is below (1 − rtol) · S_0;
* ``"stalled"`` when it stalled without ever having moved: the best value is still above
  (1 − rtol) · S_0 — the field cannot move the particles towards the target (e.g. a kernel far
  narrower than the distances between particles and data); not a success;
* None: keep going.

A stall is judged on the evaluated divergence rather than on the velocity: fields whose speed
decays while the particles still travel between modes (MMD with a Gaussian kernel) would stop
early on a speed rule. The rule only chooses when to stop, never where the particles go.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopRule:
    """The rule of the module docstring: ``floor`` S_floor, relative tolerance ``rtol`` in (0, 1),
    ``patience`` ≥ 1 evaluations (the rule needs patience + 1 evaluations to call a stall)."""

    floor: float
    rtol: float
    patience: int

    def check(self, values: list[float]) -> str | None:
        """``"converged"``, ``"stalled"`` or None given the evaluations S_0..S_k so far."""
        if not values:
            return None
        if values[-1] <= self.floor:
            return "converged"
        if len(values) <= self.patience:
            return None
        before = min(values[: -self.patience])
        if min(values[-self.patience:]) <= (1.0 - self.rtol) * before:
            return None  # still improving
        return "converged" if before < (1.0 - self.rtol) * values[0] else "stalled"
