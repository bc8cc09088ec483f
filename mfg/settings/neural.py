"""Settings of the neural solver (solvers/neural): ``solver: {kind: neural, ...}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from mfg.distributions import Gaussian, Mixture
from mfg.schema import FieldError, Loc, SolverSpec


@dataclass(frozen=True)
class NeuralSolverConfig:
    """Potential network U_θ(x, t) (ResNet of ``depth`` blocks of ``width`` units, optional
    quadratic term of rank ``quadratic_rank``, None: full, d + 1) trained for ``max_iter`` Adam
    steps of ``batch_size`` samples (``antithetic`` pairs x, 2m − x for symmetric sources;
    learning rate ``lr``·``lr_decay``^(k/max_iter)); the potential returned is the exponential
    moving average of the iterates with decay ``ema`` (0: the last iterate);
    characteristics dx/dt = −∇U_θ/λ integrated with torchdiffeq (``method``, ``nt`` steps,
    ``adjoint``).

    Critic φ_ω (``lipschitz_f``, ``w1``): ``critic_steps`` ascent steps per generator step,
    activation ``critic_activation`` (``relu``: piecewise linear, follows the cone L·dist(x, M)
    of a manifold target M; ``silu``: smooth), its Lipschitz bound L enforced by ``lipschitz`` =
    ``penalty`` (one-sided, weight ``gp_weight``) or ``spectral`` (spectral normalization).
    Penalties: ``hj_weight`` (HJ residual along the trajectories), ``terminal_weight``
    (terminal-condition residual). ``divergence``: ∇·v by the exact Laplacian or Hutchinson's
    estimator (``auto``: exact when dim <= 10).

    Output: ``eval_samples`` terminal samples (and the Sinkhorn divergence of at most 5,000
    of them to as many fresh target samples), ``n_trajectories`` trajectories, and for
    dim <= 2 with a domain, U and ρ on ``grid_n`` cells per axis at ``grid_nt + 1`` times.
    Checkpoints every ``checkpoint_every`` iterations and at the end (0: none) to
    ``checkpoint`` (None: the result path + ``.ckpt``); ``resume`` continues from it. The
    default, 500, is about a minute of training at batch 1024 on one CPU thread (0.12 s per
    iteration in 2-D and R¹²), so an interrupted run loses at most that.
    """

    kind: str = "neural"
    width: int = 128
    depth: int = 2
    quadratic: bool = True
    quadratic_rank: int | None = None
    method: str = "auto"
    nt: int = 5
    adjoint: bool = False
    rtol: float = 1e-5
    atol: float = 1e-5
    divergence: str = "auto"
    batch_size: int = 1024
    antithetic: bool = True
    max_iter: int = 2000
    lr: float = 5e-3
    lr_decay: float = 0.1
    ema: float = 0.99
    critic_width: int = 128
    critic_depth: int = 2
    critic_lr: float = 1e-3
    critic_steps: int = 5
    critic_activation: str = "relu"
    lipschitz: str = "penalty"
    gp_weight: float = 10.0
    hj_weight: float = 5.0
    terminal_weight: float = 0.0
    device: str = "cpu"
    dtype: str = "float32"
    eval_samples: int = 5000
    n_trajectories: int = 256
    grid_n: int = 64
    grid_nt: int = 8
    checkpoint: str | None = None
    checkpoint_every: int = 500
    resume: bool = False
    progress: bool = True


_D = NeuralSolverConfig


class NeuralSolverSpec(SolverSpec):
    kind: Literal["neural"]
    width: int = Field(default=_D.width, ge=1)
    depth: int = Field(default=_D.depth, ge=0)
    quadratic: bool = _D.quadratic
    quadratic_rank: int | None = Field(default=_D.quadratic_rank, ge=1)
    method: Literal["auto", "euler", "midpoint", "rk4", "dopri5"] = _D.method
    nt: int = Field(default=_D.nt, ge=1)
    adjoint: bool = _D.adjoint
    rtol: float = Field(default=_D.rtol, gt=0)
    atol: float = Field(default=_D.atol, gt=0)
    divergence: Literal["auto", "exact", "hutchinson"] = _D.divergence
    batch_size: int = Field(default=_D.batch_size, ge=2)
    antithetic: bool = _D.antithetic
    max_iter: int = Field(default=_D.max_iter, ge=1)
    lr: float = Field(default=_D.lr, gt=0)
    lr_decay: float = Field(default=_D.lr_decay, gt=0, le=1)
    ema: float = Field(default=_D.ema, ge=0, lt=1)
    critic_width: int = Field(default=_D.critic_width, ge=1)
    critic_depth: int = Field(default=_D.critic_depth, ge=1)
    critic_lr: float = Field(default=_D.critic_lr, gt=0)
    critic_steps: int = Field(default=_D.critic_steps, ge=1)
    critic_activation: Literal["relu", "silu"] = _D.critic_activation
    lipschitz: Literal["penalty", "spectral"] = _D.lipschitz
    gp_weight: float = Field(default=_D.gp_weight, ge=0)
    hj_weight: float = Field(default=_D.hj_weight, ge=0)
    terminal_weight: float = Field(default=_D.terminal_weight, ge=0)
    device: Literal["cpu", "cuda"] = _D.device
    dtype: Literal["float32", "float64"] = _D.dtype
    eval_samples: int = Field(default=_D.eval_samples, ge=2)
    n_trajectories: int = Field(default=_D.n_trajectories, ge=0)
    grid_n: int = Field(default=_D.grid_n, ge=2)
    grid_nt: int = Field(default=_D.grid_nt, ge=1)
    checkpoint: str | None = Field(default=_D.checkpoint, min_length=1)
    checkpoint_every: int = Field(default=_D.checkpoint_every, ge=0)
    resume: bool = _D.resume
    progress: bool = _D.progress

    NEEDS_DOMAIN: ClassVar[bool] = False

    #: terminal kinds the neural solver implements (with the f-divergences it handles)
    TERMINALS: ClassVar[dict[str, tuple[str, ...] | None]] = {
        "f": ("kl",),
        "lipschitz_f": ("kl", "alpha"),
        "w1": None,
        "mmd": None,
        "sinkhorn": None,
        "likelihood": None,
    }
    #: kinds whose log-density the solver evaluates in torch (``f``: the target's;
    #: ``likelihood``: the source's, at the pulled-back data)
    TORCH_DENSITIES: ClassVar[tuple[type, ...]] = (Gaussian, Mixture)

    def check_problem(self, source: Any, target: Any, terminal: Any) -> None:
        """Only TERMINALS; ``f`` needs a Gaussian/mixture target (log π in torch) and a source
        with a density (log ρ_T along characteristics starts from log ρ0); ``likelihood`` needs
        a Gaussian/mixture source (log ρ0 in torch at the data pulled back to t = 0) and has no
        terminal residual (``terminal_weight`` must be 0)."""
        if terminal.kind not in self.TERMINALS:
            raise FieldError(("terminal", "kind"), f"the neural solver does not implement "
                             f"{terminal.kind!r} (it has: {', '.join(self.TERMINALS)})")
        fs = self.TERMINALS[terminal.kind]
        if fs is not None and terminal.f not in fs:
            raise FieldError(("terminal", "f"), f"the neural solver has no {terminal.kind} "
                             f"estimator for {terminal.f!r} (it has: {', '.join(fs)})")
        if terminal.kind == "f":
            if not isinstance(target, self.TORCH_DENSITIES):
                raise FieldError(("target", "kind"), "terminal kind f needs a target with a "
                                 "log-density (gaussian or mixture; got "
                                 f"{type(target).__name__}); use lipschitz_f, mmd or sinkhorn")
            if not source.has_density:
                raise FieldError(("source", "kind"), "terminal kind f needs a source with a "
                                 f"density (got {type(source).__name__})")
        if terminal.kind == "likelihood":
            if not isinstance(source, self.TORCH_DENSITIES):
                raise FieldError(("source", "kind"), "terminal kind likelihood needs a source "
                                 "with a log-density (gaussian or mixture; got "
                                 f"{type(source).__name__})")
            if self.terminal_weight > 0:
                raise FieldError(("solver", "terminal_weight"), "terminal kind likelihood has "
                                 "no terminal residual; set terminal_weight to 0")

    def build(self, loc: Loc, dim: int) -> NeuralSolverConfig:
        return NeuralSolverConfig(**self.model_dump())
