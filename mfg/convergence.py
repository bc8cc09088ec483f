"""Convergence under grid refinement: errors of a sequence of results and observed orders.

For results r_1, ..., r_K on grids of n_1 < ... < n_K cells per axis, the observed order between
consecutive levels is p_k = log(e_k/e_{k+1}) / log(n_{k+1}/n_k). Errors are measured against
the exact solution when one is known (mfg.analytic), else against the finest result:

* ``terminal_w1``: W1(ρ_T, ρ_T^exact) through quantile functions (1-D, exact solution known);
* ``density_l1``: ∫|ρ_T − ρ_T^ref| dx on the result's grid (reference interpolated linearly);
* ``kinetic_energy``: |KE − KE^ref| / KE^ref; ``objective`` likewise.

Errors against the finest result carry the suffix ``_vs_finest`` (and are 0 on the finest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from mfg.analytic import closed_form, terminal_quantile, w1_1d_from_quantiles
from mfg.results import Result
from mfg.scenario import Scenario

ERROR_KEYS = ("terminal_w1", "density_l1", "kinetic_energy", "objective")
FINEST_SUFFIX = "_vs_finest"


def _exact_density_T(scenario: Scenario, rho_T: xr.DataArray) -> np.ndarray | None:
    cf = closed_form(scenario)
    if cf is None:
        return None
    dims = [d for d in rho_T.dims]
    mesh = np.stack(np.meshgrid(*[rho_T[d].values for d in dims], indexing="ij"), axis=-1)
    logp = cf.log_density(mesh, scenario.T)
    p = np.exp(logp - logp.max())
    h = np.prod([float(rho_T[d][1] - rho_T[d][0]) for d in dims])
    return p / (p.sum() * h)


def errors(result: Result, scenario: Scenario, reference: Result | None = None) -> dict[str, float]:
    """Errors of ``result`` against the exact solution of ``scenario`` or, where none is known,
    against ``reference`` (the finest result); keys from ERROR_KEYS that apply."""
    rho_T = result.grid["rho"].isel(t=-1)
    dims = list(rho_T.dims)
    h = float(np.prod([float(rho_T[d][1] - rho_T[d][0]) for d in dims]))
    out: dict[str, float] = {}
    quantile = terminal_quantile(scenario)
    if quantile is not None:
        out["terminal_w1"] = w1_1d_from_quantiles(rho_T.values, rho_T[dims[0]].values, quantile)
    exact = _exact_density_T(scenario, rho_T)
    cf = closed_form(scenario)
    if exact is not None:
        out["density_l1"] = float(np.sum(np.abs(rho_T.values - exact)) * h)
        ref_ke, ref_obj = cf.kinetic_energy, cf.objective
        suffix = ""
    elif reference is not None:
        ref = reference.grid["rho"].isel(t=-1).interp({d: rho_T[d] for d in dims})
        out["density_l1" + FINEST_SUFFIX] = float(
            np.sum(np.abs(rho_T.values - ref.fillna(0).values)) * h
        )
        ref_ke = reference.metrics["kinetic_energy"]
        ref_obj = reference.metrics["objective"]
        suffix = FINEST_SUFFIX
    else:
        return out
    ke = result.metrics["kinetic_energy"]
    out["kinetic_energy" + suffix] = abs(ke - ref_ke) / abs(ref_ke)
    out["objective" + suffix] = abs(result.metrics["objective"] - ref_obj) / abs(ref_obj)
    return out


def observed_orders(ns: list[int], errs: list[float]) -> list[float]:
    """p_k = log(e_k/e_{k+1}) / log(n_{k+1}/n_k) for consecutive levels (nan where e ≤ 0)."""
    out = []
    for (n0, e0), (n1, e1) in zip(zip(ns, errs, strict=True), zip(ns[1:], errs[1:], strict=True),
                                  strict=False):
        ok = e0 > 0 and e1 > 0
        out.append(float(np.log(e0 / e1) / np.log(n1 / n0)) if ok else float("nan"))
    return out


def plot_convergence(ns: list[int], table: dict[str, list[float]], path: str | Path,
                     title: str = "") -> Path:
    """Log–log plot of each error against the cells per axis, with reference slopes 1 and 2."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from mfg.plotting import save_figure

    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.add_subplot()
    n = np.asarray(ns, dtype=float)
    for key, errs in table.items():
        e = np.asarray(errs, dtype=float)
        ok = np.isfinite(e) & (e > 0)
        if ok.sum() >= 2:
            ax.loglog(n[ok], e[ok], "o-", label=key)
    finite = [e for errs in table.values() for e in errs if np.isfinite(e) and e > 0]
    if finite:
        e0 = max(finite)
        for slope, style in ((1, ":"), (2, "--")):
            ax.loglog(n, e0 * (n[0] / n) ** slope, "k" + style, lw=0.8, label=f"order {slope}")
    ax.set_xlabel("cells per axis n")
    ax.set_ylabel("error")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path)
    return path
