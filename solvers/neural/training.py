"""Training loop of the neural solver: generator (potential) and critic steps, checkpoints, resume,
and the non-finite guard.

One iteration (batch of B source samples x0 ~ ρ0):

1. integrate the characteristics from 0 to T (dynamics.integrate): x_T, ell_T, K_T, H_T;
2. critic kinds: ``critic_steps`` ascent steps on E_P[φ] − Λ_Q(φ) (− gradient penalty) with P the
   detached x_T and fresh target batches Q;
3. generator step on  J_B = mean K_T + Ĝ + hj_weight·mean H_T/(Tλ) + terminal_weight·R_T  with Ĝ the
   generator's share of the terminal cost (terminal.py) and R_T the terminal residual:
   mean |∇U(x_T, T) − ∇φ(x_T)|² (critic kinds) or Var[U(x_T, T) − log(ρ_T/π)(x_T)] (KL).
   H_T = ∫(−∂tU + |∇U|²/(2λ))² dt scales as λ²|v|⁴T, K_T as λ|v|²: dividing by Tλ keeps the
   weight's meaning when λ changes. With Euler steps H_T gets the endpoint terms of the trapezoid
   rule (dynamics.hj_path_integral), so the residual at t = T is penalized too.

Source batches are antithetic (x, 2m − x) for symmetric sources when ``antithetic`` is set.

Both losses are the forward of a module (:class:`LossModule`) that DistributedDataParallel wraps
under torchrun (solvers.neural.distributed): DDP averages only the gradients of work done inside
the wrapped forward, and the potential's gradients come from Potential.derivatives inside odeint,
so the generator's forward holds the whole step (integration, critic steps, terminal part,
penalties) and the critic's forward its objective and gradient penalty. Every random draw is of
the global batch (``batch_size``) and each process keeps its shard; batch statistics are taken on
the gathered global batch (``Group.gather``), so the losses do not depend on the process count.
With one process, shard and gather are the identity.

Randomness: all samples come from one numpy Generator and one torch Generator seeded by the
scenario's seed; their states are in the checkpoint, so a resumed run on CPU reproduces the
uninterrupted one bit for bit.

A checkpoint carries the run's fingerprint (solvers.neural.fingerprint); resuming it under a
different problem or training, with ``max_iter`` below its iteration, or from a file that is not
a checkpoint of this format is a :class:`CheckpointError` (bad input: the CLI exits 2). It also
records the ``max_iter`` it was written under, on which the learning-rate schedule depends:
resuming under another one is allowed (to train longer) and said on stderr, and
:func:`continuation` tells whether a checkpoint is the same run's, to go on exactly; and the
training seconds spent so far, so that a resumed run's time counts its earlier sessions.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mfg.distributions import Distribution, Gaussian, Uniform
from mfg.results import clean_stale_temporaries
from mfg.scenario import Scenario, ScenarioError
from solvers.neural.distributed import Group, Ranks
from solvers.neural.dynamics import (
    Dynamics,
    hj_path_integral,
    integrate,
    resolve_divergence,
    resolve_method,
)
from solvers.neural.fingerprint import differences, fingerprint
from solvers.neural.networks import Critic, Potential, gradient_penalty_terms
from solvers.neural.terminal import (
    CRITIC_KINDS,
    critic_objective,
    sample_divergence,
    torch_log_density,
)

#: per-iteration history keys (equal-length lists)
HISTORY_KEYS = ("loss", "kinetic_energy", "terminal_cost", "hj_penalty", "terminal_penalty",
                "critic_objective", "lr")
#: 2: with the run's fingerprint (format 1 had only the architecture)
CHECKPOINT_FORMAT = 2
#: sources symmetric about their mean (antithetic sampling applies)
SYMMETRIC_SOURCES = (Gaussian, Uniform)


class NeuralTrainingError(RuntimeError):
    """Training stopped (non-finite values, bad checkpoint); the message says what to do."""


class CheckpointError(NeuralTrainingError, ScenarioError):
    """A checkpoint that cannot be resumed by this run: missing, unreadable, of another format,
    of another problem or training (the fields are named), or past ``max_iter``. It is bad
    input, so it is also a ScenarioError (exit 2 in the CLI)."""


def rademacher(shape: tuple[int, ...], like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """±1 entries with probability ½ each, dtype and device of ``like``."""
    r = torch.randint(0, 2, shape, generator=gen, device=like.device)
    return (2 * r - 1).to(like.dtype)


def source_batch(src: Distribution, n: int, rng: np.random.Generator,
                 antithetic: bool) -> np.ndarray:
    """n source samples (n, d); with ``antithetic`` and a source symmetric about its mean
    (Gaussian, uniform box), half of them are the reflections 2m − x of the other half, which
    cancels the odd part of the sampling noise (the noise on the terminal mean, above all)."""
    if not (antithetic and isinstance(src, SYMMETRIC_SOURCES)):
        return src.sample(n, rng)
    half = src.sample((n + 1) // 2, rng)
    return np.concatenate([half, 2 * src.mean() - half])[:n]


class LossModule(nn.Module):
    """``forward(*args) = loss_fn(*args)`` with ``owner``'s parameters as its own: the module
    DistributedDataParallel wraps, so that the work of ``loss_fn`` is the wrapped forward."""

    def __init__(self, owner: nn.Module, loss_fn: Callable[..., Any]):
        super().__init__()
        self.owner = owner
        self.loss_fn = loss_fn

    def forward(self, *args: Any) -> Any:
        return self.loss_fn(*args)


class Trainer:
    """State of one training run: networks, optimizers, random generators, history.

    ``group``: the processes sharing the run (solvers.neural.distributed); None: this process
    alone. Subclasses change the objective by overriding :meth:`draw_batch` and
    :meth:`generator_loss` (it runs inside the DDP-wrapped forward, on this process's shard;
    gather before taking batch statistics). A subclass that overrides :meth:`step` instead
    bypasses DDP and runs in one process only (:func:`distributable`)."""

    def __init__(self, scenario: Scenario, device: torch.device, dtype: torch.dtype,
                 group: Group | None = None):
        cfg = scenario.solver
        self.scenario, self.cfg, self.device, self.dtype = scenario, cfg, device, dtype
        self.group = group if group is not None else Group(Ranks(), device)
        self.term = scenario.terminal
        self.dim, self.lam, self.T = scenario.dim, scenario.lam, scenario.T
        torch.manual_seed(scenario.seed)
        self.potential = Potential(self.dim, cfg.width, cfg.depth, cfg.quadratic,
                                   scale=self.lam, rank=cfg.quadratic_rank).to(device, dtype)
        self.opt = torch.optim.Adam(self.potential.parameters(), lr=cfg.lr)
        # the iterate average the run returns (``ema``), a copy kept out of the optimizer
        self.average = (copy.deepcopy(self.potential).requires_grad_(False)
                        if cfg.ema > 0 else None)
        self.critic: Critic | None = None
        self.critic_opt: torch.optim.Optimizer | None = None
        if self.term.kind in CRITIC_KINDS:
            self.critic = Critic(self.dim, self.term.L, cfg.critic_width, cfg.critic_depth,
                                 spectral=cfg.lipschitz == "spectral",
                                 activation=cfg.critic_activation).to(device, dtype)
            self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr,
                                               betas=(0.5, 0.9))
        self.rng = np.random.default_rng(scenario.seed)
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(scenario.seed)
        self.needs_logp = self.term.kind == "f"
        self.divergence = resolve_divergence(cfg.divergence, self.dim)
        self.method = resolve_method(cfg.method, self.term.kind)
        self.log_pi = torch_log_density(scenario.target) if self.needs_logp else None
        self.sample_div = (sample_divergence(self.term)
                           if self.term.kind in ("mmd", "sinkhorn") else None)
        self.dyn = Dynamics(self.potential, self.lam,
                            self.divergence if self.needs_logp else None,
                            hj=cfg.hj_weight > 0, train=True)
        self.iteration = 0
        #: training time of the run so far (s), earlier sessions of a resumed run included,
        #: and the part of it those earlier sessions spent
        self.train_seconds = self.carried_seconds = 0.0
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.last_checkpoint: tuple[str, int] | None = None
        # after the networks are built (DDP broadcasts rank 0's parameters, equal anyway)
        self.generator_model = self.group.wrap(LossModule(self.potential, self.generator_loss))
        self.critic_model = (None if self.critic is None else
                             self.group.wrap(LossModule(self.critic, self.critic_loss)))

    # ------------------------------------------------------------------------------------------
    def tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def _check(self, name: str, value: torch.Tensor, parts: dict[str, float]) -> None:
        if bool(torch.isfinite(value).all()):
            return
        where = (f"last good checkpoint: {self.last_checkpoint[0]} (iteration "
                 f"{self.last_checkpoint[1]})" if self.last_checkpoint else "no checkpoint saved")
        detail = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
        raise NeuralTrainingError(
            f"non-finite {name} at iteration {self.iteration + 1} ({detail}); {where}; "
            "lower solver.lr, raise solver.nt or use solver.dtype=float64"
        )

    @property
    def solution(self) -> Potential:
        """The potential the run returns: the exponential moving average of the iterates when
        ``ema`` > 0 (:meth:`update_average`), else the last iterate."""
        return self.average if self.average is not None else self.potential

    def average_decay(self, iteration: int) -> float:
        """min(ema, (1 + k)/(10 + k)) after k steps: the average follows the iterates closely
        at first (so that a short run does not return its initial weights) and averages over
        about 1/(1 − ema) steps later."""
        return min(self.cfg.ema, (1.0 + iteration) / (10.0 + iteration))

    @torch.no_grad()
    def update_average(self) -> None:
        """θ̄ ← δ θ̄ + (1 − δ) θ after a step (δ: :meth:`average_decay`). Averaging the
        iterates of a stochastic saddle-point search (Polyak–Ruppert; Yazıcı et al. 2019 for
        generator–critic training) damps the oscillation the critic drives; measured on the
        2-D pinwheel (seed 0, width 64, 2,000 iterations): Sinkhorn to the target 1.27e-2 and
        HJ residual 0.121 for the last iterate, 0.99e-2 and 0.110 for the average with ema 0.99,
        1.24e-2 and 0.112 with 0.998."""
        if self.average is None:
            return
        decay = self.average_decay(self.iteration)
        for avg, cur in zip(self.average.parameters(), self.potential.parameters(), strict=True):
            avg.lerp_(cur.detach(), 1.0 - decay)

    def lr_at(self, iteration: int) -> float:
        """lr · lr_decay^(iteration/max_iter)."""
        return self.cfg.lr * self.cfg.lr_decay ** (iteration / self.cfg.max_iter)

    def critic_loss(self, x: torch.Tensor, y: torch.Tensor,
                    u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, objective) of one critic step from this process's shards: objective
        E_P[φ] − Λ_Q(φ) on the gathered global batch (P: x (n, d), Q: y (n, d)), loss =
        −objective + gp_weight · mean penalty at x̂ = u x + (1 − u) y (u (n, 1); None: no
        penalty). The forward of the critic's LossModule."""
        critic, gather = self.critic, self.group.gather
        obj = critic_objective(self.term, critic, gather(critic(x)), gather(critic(y)))
        loss = -obj
        if u is not None:
            penalty = gather(gradient_penalty_terms(critic, x, y, u)).mean()
            loss = loss + self.cfg.gp_weight * penalty
        return loss, obj

    def _critic_steps(self, x_t: torch.Tensor, batch: int) -> float:
        """``critic_steps`` ascent steps against fresh target batches; x_t: this process's shard
        of the (detached) terminal samples, ``batch`` the global batch size."""
        cfg, shard = self.cfg, self.group.shard
        obj = torch.zeros(())
        for _ in range(cfg.critic_steps):
            y = self.tensor(shard(self.scenario.target.sample(batch, self.rng)))
            u = None
            if cfg.lipschitz == "penalty" and cfg.gp_weight > 0:
                u = shard(torch.rand(batch, 1, dtype=self.dtype, device=self.device,
                                     generator=self.gen))
            loss, obj = self.critic_model(x_t, y, u)
            self._check("critic loss", loss, {"critic_objective": float(obj.detach())})
            self.critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.critic_opt.step()
        return float(obj.detach())

    def generator_loss(self, x0_np: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        """J_B (module docstring) for the global batch whose shard x0_np (n, d) this process
        holds; the critic steps run in between (on the detached terminal samples). Returns the
        loss and its parts: ``kinetic_energy``, ``terminal_cost`` (reported: for critic kinds the
        critic's objective), ``generator_terminal`` (the generator's share Ĝ), ``hj_penalty``,
        ``terminal_penalty`` (tensors, detached) and ``critic_objective`` (float). The forward
        of the generator's LossModule."""
        cfg, src, gather = self.cfg, self.scenario.source, self.group.gather
        batch = cfg.batch_size
        x0 = self.tensor(x0_np)
        if self.needs_logp and self.divergence == "hutchinson":
            self.dyn.noise = self.group.shard(rademacher((batch, self.dim), x0, self.gen))
        times = torch.tensor([0.0, self.T], dtype=self.dtype, device=self.device)
        xs, ells, ks, hs = integrate(self.dyn, x0, times, self.method, cfg.nt, cfg.adjoint,
                                     cfg.rtol, cfg.atol)
        x_t, ell, kin, h_path = xs[-1], ells[-1], ks[-1], hs[-1]
        if cfg.hj_weight > 0:
            h_path = hj_path_integral(self.dyn, h_path, x0, 0.0, x_t, self.T, self.method,
                                      cfg.nt)
        ke = gather(kin).mean()
        critic_obj = math.nan
        g = None
        if self.critic is not None:
            critic_obj = self._critic_steps(x_t.detach(), batch)
            g_gen = gather(self.critic(x_t)).mean()
            g_report = critic_obj
        elif self.needs_logp:
            g = gather(self.tensor(src.log_density(x0_np)) + ell - self.log_pi(x_t))
            g_gen = g.mean()
            g_report = float(g_gen.detach())
        else:
            y = self.tensor(self.scenario.target.sample(batch, self.rng))
            g_gen = self.sample_div(gather(x_t), y)
            g_report = float(g_gen.detach())
        loss = ke + g_gen
        hj_pen = gather(h_path).mean() / (self.T * self.lam)
        if cfg.hj_weight > 0:
            loss = loss + cfg.hj_weight * hj_pen
        term_pen = torch.zeros((), dtype=self.dtype, device=self.device)
        if cfg.terminal_weight > 0:
            term_pen = self.terminal_penalty(x_t, g)
            loss = loss + cfg.terminal_weight * term_pen
        parts = {"kinetic_energy": ke.detach(), "terminal_cost": g_report,
                 "generator_terminal": g_gen.detach(), "hj_penalty": hj_pen.detach(),
                 "terminal_penalty": term_pen.detach(), "critic_objective": critic_obj}
        return loss, parts

    def draw_batch(self) -> np.ndarray:
        """This process's shard (B/N, d) of a global source batch of B = ``batch_size``."""
        cfg = self.cfg
        return self.group.shard(source_batch(self.scenario.source, cfg.batch_size, self.rng,
                                             cfg.antithetic))

    def step(self) -> None:
        """One generator iteration (module docstring): :meth:`draw_batch` through the
        generator's (DDP-wrapped) :meth:`generator_loss`, backward, Adam step, history."""
        loss, parts = self.generator_model(self.draw_batch())
        ke, g_report = parts["kinetic_energy"], parts["terminal_cost"]
        shown = {"kinetic_energy": float(ke), "terminal_cost": g_report}
        self._check("loss", loss, shown)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in self.potential.parameters():
            if p.grad is not None:
                self._check("gradient", p.grad, shown)
        self.opt.step()
        self.update_average()
        self.iteration += 1
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.iteration)
        loss = loss.detach()
        # the objective's estimate (for critic kinds the generator's loss holds E_P[φ], whose
        # constant is arbitrary; the critic's objective is the terminal cost)
        objective = float(ke) + g_report + float(loss - ke - parts["generator_terminal"])
        rec = {"loss": objective, "kinetic_energy": float(ke), "terminal_cost": g_report,
               "hj_penalty": float(parts["hj_penalty"]),
               "terminal_penalty": float(parts["terminal_penalty"]),
               "critic_objective": parts["critic_objective"], "lr": self.opt.param_groups[0]["lr"]}
        for k in HISTORY_KEYS:
            self.history[k].append(rec[k])

    def terminal_penalty(self, x_t: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """R_T: mean |∇U(x_T, T) − ∇φ(x_T)|² (critic) or Var[U(x_T, T) − g] with g = log ρ_T/π,
        over the global batch (x_t: this process's shard (n, d); g: gathered (B,))."""
        if not x_t.requires_grad:
            x_t = x_t.detach().requires_grad_(True)
        u, gx, _, _ = self.potential.derivatives(x_t, self.T)
        if self.critic is not None:
            (gphi,) = torch.autograd.grad(self.critic(x_t).sum(), x_t, create_graph=True)
            return self.group.gather(((gx - gphi) ** 2).sum(dim=1)).mean()
        if g is not None:
            return torch.var(self.group.gather(u) - g)
        raise NeuralTrainingError(
            f"solver.terminal_weight: no terminal residual for terminal kind {self.term.kind!r} "
            "(it exists for f, lipschitz_f and w1)")

    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": self.iteration,
            "max_iter": self.cfg.max_iter,
            "train_seconds": self.train_seconds,
            "fingerprint": fingerprint(self.scenario),
            "potential": self.potential.state_dict(),
            "average": None if self.average is None else self.average.state_dict(),
            "opt": self.opt.state_dict(),
            "critic": None if self.critic is None else self.critic.state_dict(),
            "critic_opt": None if self.critic_opt is None else self.critic_opt.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_gen": self.gen.get_state(),
            "history": {k: list(v) for k, v in self.history.items()},
        }

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (temporary file renamed onto ``path``); rank 0 alone
        writes (every process holds the same state)."""
        path = Path(path)
        if not self.group.is_main:
            self.last_checkpoint = (str(path), self.iteration)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(path.parent)  # left by a run killed while saving
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            torch.save(self.state_dict(), tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.last_checkpoint = (str(path), self.iteration)

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` for the same fingerprint (module doc);
        :class:`CheckpointError` otherwise, before anything is changed."""
        path = Path(path)
        state = self._read_checkpoint(path)
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"solver.resume: checkpoint {path} is damaged (cannot restore "
                                  f"{type(err).__name__}: {' '.join(str(err).split())[:120]})"
                                  ) from None
        self.last_checkpoint = (str(path), self.iteration)

    def _read_checkpoint(self, path: Path) -> dict[str, Any]:
        """:func:`read_checkpoint` for this run; a checkpoint written under another
        ``max_iter`` is said on stderr when the learning rate decays (the schedule changes)."""
        state = read_checkpoint(path, self.scenario, self.device)
        written = state.get("max_iter")
        if (self.group.is_main and self.cfg.lr_decay != 1 and isinstance(written, int)
                and written != self.cfg.max_iter):
            print(f"warning: solver.max_iter: resuming {path} (written under max_iter {written}) "
                  f"with max_iter {self.cfg.max_iter}: the learning rate lr·lr_decay^(k/max_iter) "
                  f"changes from iteration {state['iteration']} on", file=sys.stderr)
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        """Networks, optimizers, random generators, iteration and history from ``state``."""
        self.potential.load_state_dict(state["potential"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.opt.load_state_dict(state["opt"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.critic_opt.load_state_dict(state["critic_opt"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.gen.set_state(state["torch_gen"].cpu())  # a generator's state lives on the CPU
        self.iteration = int(state["iteration"])
        # absent from checkpoints written before it was kept
        self.train_seconds = self.carried_seconds = float(state.get("train_seconds", 0.0))
        self.history = {k: list(state["history"].get(k, [])) for k in HISTORY_KEYS}
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.iteration)


def read_checkpoint(path: str | Path, scenario: Scenario,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state a checkpoint at ``path`` holds, checked against ``scenario``'s run: a readable
    checkpoint of :data:`CHECKPOINT_FORMAT`, of the same fingerprint, at an iteration within
    ``solver.max_iter``; :class:`CheckpointError` naming what differs otherwise.
    ``weights_only``: a checkpoint holds tensors and plain Python values only, and a file that
    is not one must not run code when unpickled."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"solver.resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"solver.resume: {path} is not a readable checkpoint "
                              f"({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"solver.resume: {path} is not a checkpoint of format "
                              f"{CHECKPOINT_FORMAT} (found {found!r}); start without "
                              "--resume")
    diff = differences(state.get("fingerprint") or {}, fingerprint(scenario))
    if diff:
        raise CheckpointError(f"solver.resume: checkpoint {path} is of a different run; "
                              f"differing: {'; '.join(diff)}")
    done = state.get("iteration")
    if not isinstance(done, int) or done < 0:
        raise CheckpointError(f"solver.resume: checkpoint {path} has no valid iteration "
                              f"count (found {done!r})")
    max_iter = scenario.solver.max_iter
    if done > max_iter:
        raise CheckpointError(f"solver.max_iter: {max_iter} is below the checkpoint's "
                              f"iteration {done} ({path}); set max_iter >= {done} to resume")
    return state


def continuation(path: str | Path, scenario: Scenario) -> int | None:
    """The iteration at which ``scenario``'s run can go on from the checkpoint at ``path``
    exactly as if it had not stopped: the checkpoint passes :func:`read_checkpoint` and was
    written under the same ``max_iter`` (the learning-rate schedule's horizon). None otherwise,
    a checkpoint from before ``max_iter`` was recorded included."""
    try:
        state = read_checkpoint(path, scenario)
    except CheckpointError:
        return None
    if state.get("max_iter") != scenario.solver.max_iter:
        return None
    return int(state["iteration"])


def distributable(trainer_class: type[Trainer]) -> bool:
    """Whether the class trains through the DDP-wrapped :meth:`Trainer.generator_loss` (it does
    not override :meth:`Trainer.step`)."""
    return trainer_class.step is Trainer.step


def train(trainer: Trainer, checkpoint: str | None,
          callback: Callable[[Trainer], None] | None = None) -> None:
    """Run iterations up to ``cfg.max_iter`` (resuming from ``checkpoint`` if ``cfg.resume``),
    checkpointing every ``cfg.checkpoint_every`` iterations and at the end; ``callback(trainer)``
    after each iteration (tests use it to interrupt). Every process loads the checkpoint; rank 0
    alone shows progress and writes checkpoints."""
    cfg = trainer.cfg
    if cfg.resume:
        trainer.load(checkpoint)
    shown = cfg.progress and trainer.group.is_main
    bar = tqdm(total=cfg.max_iter, initial=trainer.iteration, desc="neural",
               disable=None if shown else True, dynamic_ncols=True)
    try:
        while trainer.iteration < cfg.max_iter:
            start = time.perf_counter()
            trainer.step()
            trainer.train_seconds += time.perf_counter() - start
            h = trainer.history
            bar.update(1)
            if trainer.iteration % 10 == 0 or trainer.iteration == cfg.max_iter:
                bar.set_postfix(loss=f"{h['loss'][-1]:.4g}", ke=f"{h['kinetic_energy'][-1]:.4g}",
                                G=f"{h['terminal_cost'][-1]:.4g}")
            if (checkpoint and cfg.checkpoint_every
                    and trainer.iteration % cfg.checkpoint_every == 0):
                trainer.save(checkpoint)
            if callback is not None:
                callback(trainer)
        if checkpoint and (cfg.checkpoint_every or cfg.resume):
            if trainer.last_checkpoint is None or trainer.last_checkpoint[1] != trainer.iteration:
                trainer.save(checkpoint)
    finally:
        bar.close()
