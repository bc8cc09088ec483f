"""Neural family (DESIGN.md §2): a potential network U_θ(x, t) whose characteristics
dx/dt = −∇U_θ/λ carry source samples to ρ_T (torchdiffeq), trained on kinetic energy plus a
terminal cost (KL along characteristics, Lipschitz-regularized f-divergences with a critic, MMD,
Sinkhorn). Public surface: :func:`solve` and :class:`NeuralTrainingError`.
"""

from solvers.neural.solver import solve
from solvers.neural.training import NeuralTrainingError

__all__ = ["NeuralTrainingError", "solve"]
