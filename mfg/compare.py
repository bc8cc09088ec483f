"""Compare two results, or one result with the closed form, on common ground (DESIGN.md §3).

Both entry points return one flat, JSON-able table ``{name: float | str}`` (in a stable order):

- ``<label>.solver``, ``<label>.status``: what is compared.
- Densities, when both results have a grid: b's ``rho`` is interpolated onto a's grid and times
  (linear; in time the query is clamped to b's time range, in space cells outside b's grid get 0),
  then at every stored time t of a

      density_l1@t   = sum_i |rho_a(x_i, t) - rho_b(x_i, t)| dV      (dV = a's cell volume)
      density_linf@t = max_i |rho_a(x_i, t) - rho_b(x_i, t)|

  and ``density_l1_max`` / ``density_linf_max`` over t.
- Moments at T of each result (from ``rho`` at a's last time, else from the terminal samples):
  ``<label>.mean_<xk> = sum x_k rho dV / sum rho dV`` and
  ``<label>.std_<xk> = sqrt(sum (x_k - mean_k)^2 rho dV / sum rho dV)``; ``mean_err`` and
  ``std_err`` are the largest absolute differences over the coordinates.
- Value function at T, up to a constant: with D = U_a - U_b (b interpolated onto a's grid) and
  the mask M = {rho_a > 1e-3 max rho_a} (where both are defined), c = sum_M rho_a D / sum_M rho_a,
  ``U_T_shift = c``, ``U_T_linf = max_M |D - c|``, ``U_T_l1w = sum_M rho_a |D - c| / sum_M rho_a``.
- ``<label>.kinetic_energy``, ``<label>.terminal_cost``, ``<label>.objective`` and
  ``<key>_rel_diff = |a - b| / max(|b|, 1e-12)`` (b is the reference).
- Residual metrics of both (every metric whose name holds "residual", "error" or "gap").
- ``w2_terminal``: exact W2 (quantile functions in 1-D, else POT ``ot.emd2`` with the squared
  Euclidean cost) between the terminal measures when at least one result has terminal samples:
  samples (at most 2000, subsampled with a fixed seed) carry uniform weights; a grid enters as
  the discrete measure on its cell centres with weights rho(x_i, T) dV (or, above 10000 cells,
  2000 samples drawn from it). Grid against grid is skipped.

:func:`compare_with_target` measures one result against its own target instead (debiased
Sinkhorn, the metric every family reports, on exact cell measures for grids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from mfg.manifold import DRAWS, mean_over_draws
from mfg.metrics import EVAL_BLUR, EVAL_P, Measure, sinkhorn_divergence, uniform, w2
from mfg.results import Result

if TYPE_CHECKING:
    from mfg.scenario import Scenario

#: the energies compared with a relative difference
ENERGIES = ("kinetic_energy", "terminal_cost", "objective")
#: metric names holding one of these are reported as residuals
RESIDUAL_WORDS = ("residual", "error", "gap")
#: relative threshold of the mask on which value functions are compared
U_MASK_REL = 1e-3
#: largest number of samples used for W2, and seed of the subsampling
W2_MAX_SAMPLES = 2000
W2_SEED = 0
#: largest grid support used as an exact discrete measure in W2
W2_MAX_CELLS = 10_000
#: seed of the fresh target and source draws of :func:`compare_with_target`
TARGET_SEED = 0
#: cells per axis of the closed-form density built for results that have no grid
_EXACT_CELLS = {1: 512, 2: 96, 3: 24}

Table = dict[str, Any]


class CompareError(ValueError):
    """The two inputs cannot be compared (different dimensions, no closed form); one line."""


# ----------------------------------------------------------------------------------------------
# grid helpers


def spatial_dims(da: xr.DataArray) -> list[str]:
    """The dimensions of ``da`` other than time ``t``, in order (x1, x2, ...)."""
    return [d for d in da.dims if d != "t"]


def cell_volume(da: xr.DataArray) -> float:
    """dV = prod_k (mean spacing of coordinate x_k); 1 for a coordinate with a single point."""
    dv = 1.0
    for d in spatial_dims(da):
        x = np.asarray(da[d].values, dtype=float)
        dv *= float(np.mean(np.diff(x))) if x.size > 1 else 1.0
    return dv


def _check_same_dims(a: xr.DataArray, b: xr.DataArray) -> None:
    if spatial_dims(a) != spatial_dims(b):
        raise CompareError(
            f"cannot compare grids over {spatial_dims(a)} and {spatial_dims(b)} (dimensions differ)"
        )


def _interp_time(b: xr.DataArray, t: np.ndarray) -> xr.DataArray:
    """b at times ``t`` (linear), each query clamped to b's time range."""
    tb = np.asarray(b["t"].values, dtype=float)
    if tb.size == 1:
        out = b.isel(t=np.zeros(t.size, dtype=int))
    else:
        out = b.interp(t=np.clip(t, tb.min(), tb.max()), method="linear")
    return out.assign_coords(t=t)


def on_grid_of(b: xr.DataArray, a: xr.DataArray, fill: float) -> xr.DataArray:
    """b interpolated (linear) onto a's coordinates; spatial points outside b's grid get ``fill``.

    Time (if both have it) is interpolated with clamping, see :func:`_interp_time`.
    """
    _check_same_dims(a, b)
    if "t" in a.dims and "t" in b.dims:
        b = _interp_time(b, np.asarray(a["t"].values, dtype=float))
    coords = {d: a[d].values for d in spatial_dims(a)}
    same = all(
        b[d].size == x.size and np.allclose(b[d].values, x, rtol=0, atol=1e-12)
        for d, x in coords.items()
    )
    if same:
        return b.assign_coords(coords)
    return b.interp(coords, method="linear", kwargs={"fill_value": fill})


# ----------------------------------------------------------------------------------------------
# pieces of the table


def _fmt_t(t: float) -> str:
    return f"{t:.4g}"


def density_errors(a: xr.Dataset, b: xr.Dataset) -> Table:
    """L1 (sum |rho_a - rho_b| dV) and L-infinity density errors at each time of a, and the max
    of each over time."""
    rho_a = a["rho"].transpose("t", ...)
    rho_b = on_grid_of(b["rho"], rho_a, fill=0.0).transpose(*rho_a.dims)
    dims = spatial_dims(rho_a)
    diff = np.abs(rho_a - rho_b)
    l1 = (diff.sum(dims) * cell_volume(rho_a)).values
    linf = diff.max(dims).values
    table: Table = {}
    for t, e in zip(rho_a["t"].values, l1, strict=True):
        table[f"density_l1@t={_fmt_t(t)}"] = float(e)
    for t, e in zip(rho_a["t"].values, linf, strict=True):
        table[f"density_linf@t={_fmt_t(t)}"] = float(e)
    table["density_l1_max"] = float(np.max(l1))
    table["density_linf_max"] = float(np.max(linf))
    return table


def grid_moments(rho: xr.DataArray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, mean and std per coordinate of one density snapshot (negative parts clipped):
    mean_k = sum x_k rho / sum rho, std_k = sqrt(sum (x_k - mean_k)^2 rho / sum rho).
    """
    rho = rho.clip(min=0.0)
    mass = float(rho.sum())
    dims = spatial_dims(rho)
    mean = np.array([float((rho * rho[d]).sum()) / mass for d in dims])
    var = np.array(
        [float((rho * (rho[d] - m) ** 2).sum()) / mass for d, m in zip(dims, mean, strict=True)]
    )
    return dims, mean, np.sqrt(var)


def terminal_moments(result: Result) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Moments at T: from ``rho`` at the last stored time, else from the terminal samples."""
    if result.grid is not None and "rho" in result.grid:
        return grid_moments(final_snapshot(result.grid["rho"])[0])
    x = result.samples.get("terminal")
    if x is None:
        return None
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    return [f"x{k + 1}" for k in range(x.shape[1])], x.mean(axis=0), x.std(axis=0)


def moment_rows(a: Result, b: Result, labels: tuple[str, str]) -> Table:
    """``<label>.mean_<x>``, ``<label>.std_<x>`` for both, and the largest differences."""
    table: Table = {}
    moments = [terminal_moments(a), terminal_moments(b)]
    for label, mom in zip(labels, moments, strict=True):
        if mom is None:
            continue
        names, mean, std = mom
        for name, m, s in zip(names, mean, std, strict=True):
            table[f"{label}.mean_{name}"] = float(m)
            table[f"{label}.std_{name}"] = float(s)
    ma, mb = moments
    if ma is not None and mb is not None and ma[1].size == mb[1].size:
        table["mean_err"] = float(np.max(np.abs(ma[1] - mb[1])))
        table["std_err"] = float(np.max(np.abs(ma[2] - mb[2])))
    return table


def final_snapshot(da: xr.DataArray) -> tuple[xr.DataArray, float | None]:
    """``da`` at its last stored time without the time coordinate, and that time (None if none)."""
    if "t" not in da.dims:
        return da.drop_vars("t", errors="ignore"), None
    return da.isel(t=-1).drop_vars("t"), float(da["t"].values[-1])


def value_function_errors(a: xr.Dataset, b: xr.Dataset) -> Table:
    """U_a - U_b at T up to a constant, on the mask rho_a > 1e-3 max rho_a (see module doc)."""
    if "U" not in a or "U" not in b or "rho" not in a:
        return {}
    ua, t_final = final_snapshot(a["U"])
    ub = b["U"]
    if "t" in ub.dims:
        t_query = np.array([t_final if t_final is not None else float(ub["t"].values[-1])])
        ub = _interp_time(ub, t_query).isel(t=0, drop=True)
    ub = on_grid_of(ub, ua, fill=np.nan).transpose(*ua.dims)
    rho = on_grid_of(final_snapshot(a["rho"])[0], ua, fill=0.0).transpose(*ua.dims)
    d, w = (ua - ub).values, rho.values
    mask = (w > U_MASK_REL * w.max()) & np.isfinite(d)
    if not mask.any():
        return {}
    w, d = w[mask], d[mask]
    shift = float(np.sum(w * d) / np.sum(w))
    e = np.abs(d - shift)
    return {
        "U_T_shift": shift,
        "U_T_linf": float(e.max()),
        "U_T_l1w": float(np.sum(w * e) / np.sum(w)),
    }


def relative_difference(a: float, b: float) -> float:
    """|a - b| / max(|b|, 1e-12): b is the reference."""
    return abs(a - b) / max(abs(b), 1e-12)


def energy_rows(a: Result, b: Result, labels: tuple[str, str]) -> Table:
    """Kinetic energy, terminal cost and objective of both and their relative differences."""
    table: Table = {}
    for key in ENERGIES:
        va, vb = a.metrics.get(key), b.metrics.get(key)
        if va is not None:
            table[f"{labels[0]}.{key}"] = float(va)
        if vb is not None:
            table[f"{labels[1]}.{key}"] = float(vb)
        if va is not None and vb is not None:
            table[f"{key}_rel_diff"] = relative_difference(float(va), float(vb))
    return table


def residual_rows(a: Result, b: Result, labels: tuple[str, str]) -> Table:
    """Every metric of each result whose name holds "residual", "error" or "gap"."""
    table: Table = {}
    for label, result in zip(labels, (a, b), strict=True):
        for key, value in result.metrics.items():
            if any(word in key for word in RESIDUAL_WORDS):
                table[f"{label}.{key}"] = float(value)
    return table


# ----------------------------------------------------------------------------------------------
# W2 between terminal measures




def _subsample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= W2_MAX_SAMPLES:
        return x
    return x[rng.choice(len(x), W2_MAX_SAMPLES, replace=False)]


def sample_measure(x: np.ndarray, rng: np.random.Generator) -> Measure:
    """Uniform weights on (at most 2000 of) the samples ``x``."""
    x = _subsample(np.asarray(x, dtype=float).reshape(len(x), -1), rng)
    return x, np.full(len(x), 1.0 / len(x))


def cell_measure(rho: xr.DataArray) -> Measure:
    """The discrete measure sum_i rho(x_i) dV delta_{x_i} on the cell centres, normalized to mass 1
    (negative rounding clipped; cells below 1e-14 max rho dropped)."""
    dims = spatial_dims(rho)
    mesh = np.stack(np.meshgrid(*[rho[d].values for d in dims], indexing="ij"), axis=-1)
    w = np.clip(rho.transpose(*dims).values, 0.0, None).ravel()
    pts = mesh.reshape(-1, len(dims))
    keep = w > 1e-14 * w.max()
    return pts[keep], w[keep] / w[keep].sum()


def grid_measure(rho: xr.DataArray, rng: np.random.Generator) -> Measure:
    """:func:`cell_measure`, or above 10000 cells 2000 samples drawn from it (cell chosen by
    mass, uniform within the cell)."""
    pts, w = cell_measure(rho)
    if len(w) <= W2_MAX_CELLS:
        return pts, w
    dims = spatial_dims(rho)
    widths = np.array([float(np.mean(np.diff(rho[d].values))) for d in dims])
    idx = rng.choice(len(w), W2_MAX_SAMPLES, p=w)
    x = pts[idx] + (rng.random((W2_MAX_SAMPLES, len(dims))) - 0.5) * widths
    return x, np.full(W2_MAX_SAMPLES, 1.0 / W2_MAX_SAMPLES)


def _terminal_rho(result: Result) -> xr.DataArray | None:
    if result.grid is None or "rho" not in result.grid:
        return None
    return final_snapshot(result.grid["rho"])[0]


def w2_rows(a: Result, b: Result) -> Table:
    """``w2_terminal`` when at least one result has terminal samples and the other a measure."""
    has_a, has_b = "terminal" in a.samples, "terminal" in b.samples
    if not (has_a or has_b):
        return {}
    rng = np.random.default_rng(W2_SEED)
    measures = []
    for result, has in ((a, has_a), (b, has_b)):
        if has:
            measures.append(sample_measure(result.samples["terminal"], rng))
            continue
        rho = _terminal_rho(result)
        if rho is None:
            return {}
        measures.append(grid_measure(rho, rng))
    if measures[0][0].shape[1] != measures[1][0].shape[1]:
        raise CompareError("cannot compare terminal samples of different dimensions")
    return {"w2_terminal": w2(measures[0], measures[1])}


# ----------------------------------------------------------------------------------------------
# entry points


def compare(a: Result, b: Result, labels: tuple[str, str] = ("a", "b")) -> Table:
    """The comparison table of ``a`` against the reference ``b`` (see the module docstring)."""
    table: Table = {}
    for label, result in zip(labels, (a, b), strict=True):
        table[f"{label}.solver"] = result.solver
        table[f"{label}.status"] = result.status
    if a.grid is not None and b.grid is not None and "rho" in a.grid and "rho" in b.grid:
        table.update(density_errors(a.grid, b.grid))
    table.update(moment_rows(a, b, labels))
    if a.grid is not None and b.grid is not None and "rho" in a.grid:
        table.update(value_function_errors(a.grid, b.grid))
    table.update(energy_rows(a, b, labels))
    table.update(residual_rows(a, b, labels))
    table.update(w2_rows(a, b))
    return table


def _closed_form_dataset(cf: Any, like: xr.Dataset) -> xr.Dataset:
    """The closed form on ``like``'s grid and times: rho normalized to mass 1 per snapshot
    (rho_i = exp(log p(x_i, t)) / (sum_j exp(log p(x_j, t)) dV)), and U if ``like`` has U.
    """
    out = {}
    for name in ("rho", "U"):
        if name not in like:
            continue
        da = like[name].transpose("t", ...)
        dims = spatial_dims(da)
        mesh = np.stack(np.meshgrid(*[da[d].values for d in dims], indexing="ij"), axis=-1)
        snaps = []
        for t in da["t"].values:
            if name == "rho":
                logp = np.asarray(cf.log_density(mesh, float(t)), dtype=float)
                p = np.exp(logp - logp.max())
                snaps.append(p / (p.sum() * cell_volume(da)))
            else:
                snaps.append(np.asarray(cf.U(mesh, float(t)), dtype=float))
        out[name] = xr.DataArray(np.stack(snaps), dims=da.dims, coords=da.coords)
    return xr.Dataset(out)


def _domain_dataset(cf: Any, scenario: Scenario) -> xr.Dataset | None:
    """The closed-form density at T on a grid of the scenario's domain (for grid-free results)."""
    from mfg.grid import Grid

    n_axis = _EXACT_CELLS.get(scenario.dim)
    if n_axis is None or scenario.domain is None:
        return None
    bounds = tuple((float(lo), float(hi)) for lo, hi in scenario.domain.bounds)
    grid = Grid(bounds, (n_axis,) * scenario.dim)
    coords = {"t": [float(scenario.T)]}
    coords.update({f"x{k + 1}": grid.centres(k) for k in range(grid.dim)})
    dims = tuple(coords)
    like = xr.Dataset({"rho": (dims, np.zeros((1, *grid.n)))}, coords=coords)
    return _closed_form_dataset(cf, like)


def compare_with_closed_form(a: Result, scenario: Scenario) -> Table:
    """The comparison table of ``a`` against the closed-form solution of ``scenario``.

    The exact density is built on a's grid at a's times (mass 1 per snapshot) together with the
    exact U; a grid-free result is compared through its terminal samples against the exact density
    at T on a grid of the scenario's domain. The exact moments at T are those of the closed form.
    Raises :class:`CompareError` (a ValueError) when the scenario has no closed form.
    """
    from mfg.analytic import closed_form

    cf = closed_form(scenario)
    if cf is None:
        raise CompareError(f"scenario {scenario.name!r} has no closed form")
    labels = ("a", "exact")
    grid = _closed_form_dataset(cf, a.grid) if a.grid is not None else _domain_dataset(cf, scenario)
    metrics = {key: float(getattr(cf, key)) for key in ENERGIES}
    exact = Result(
        solver="closed_form",
        status="exact",
        scenario_text=scenario.text,
        settings={},
        grid=grid,
        metrics=metrics,
    )
    table = compare(a, exact, labels=labels)
    t_final = float(a.grid["t"].values[-1]) if a.grid is not None else float(scenario.T)
    _exact_moments(table, cf, t_final, labels)
    return table


def _exact_moments(table: Table, cf: Any, t: float, labels: tuple[str, str]) -> None:
    """Replace the exact moment rows by the closed form's mean(t), std(t) and redo the errors."""
    mean, std = np.atleast_1d(cf.mean(t)), np.atleast_1d(cf.std(t))
    names = [k.split(".mean_", 1)[1] for k in table if k.startswith(f"{labels[0]}.mean_")]
    if len(names) != mean.size:
        names = [f"x{k + 1}" for k in range(mean.size)]
    for name, m, s in zip(names, mean, std, strict=True):
        table[f"{labels[1]}.mean_{name}"] = float(m)
        table[f"{labels[1]}.std_{name}"] = float(s)
    a_mean = [table.get(f"{labels[0]}.mean_{n}") for n in names]
    a_std = [table.get(f"{labels[0]}.std_{n}") for n in names]
    if None not in a_mean and None not in a_std:
        table["mean_err"] = float(np.max(np.abs(np.array(a_mean) - mean)))
        table["std_err"] = float(np.max(np.abs(np.array(a_std) - std)))


def _second_moment(m: Measure) -> float:
    return float(np.sum(m[1] * np.sum(m[0] ** 2, axis=1)))


def compare_with_target(a: Result, scenario: Scenario, seed: int = TARGET_SEED,
                        draws: int = DRAWS) -> Table:
    """How far ``a``'s terminal law ρ_T is from its target π, in the sample-based metric every
    family reports: the debiased Sinkhorn divergence S_ε (p = 2, blur 0.05,
    :func:`mfg.metrics.sinkhorn_divergence`).

    - A result with terminal samples x (n of them): for draws k = 0..K−1 (K = ``draws``) of n
      fresh target samples y_k, y'_k and n source samples x0_k, from default_rng(seed) for k = 0
      and default_rng([seed, k]) for k >= 1,

          sinkhorn_to_target        = (1/K) Σ_k S_ε(x, y_k)
          sinkhorn_floor            = (1/K) Σ_k S_ε(y'_k, y_k)   (the metric's own noise: read
                                                                 the first against it)
          sinkhorn_source_to_target = (1/K) Σ_k S_ε(x0_k, y_k)

      and ``draws`` = K. One draw is a noisy reading (the floor between two 5,000-point draws of
      a toy set varies by a factor 3 to 8: mfg.manifold), hence the mean; K = 1 is the single
      draw of earlier versions.
    - A grid result (``rho``, ``target``, ``source`` on the cells): the same divergences between
      the exact discrete measures Σ_i ρ(x_i) dV δ_{x_i} on the cell centres (no sampling noise,
      floor 0, ``draws`` ignored), e.g. the bias of the game's own answer against its data.

    Also the second moments E|x|² of ρ_T and of π (π: draw 0)."""
    if draws < 1:
        raise CompareError(f"draws: expected a number of target draws >= 1, got {draws}")
    labels = ("a", "target")
    table: Table = {f"{labels[0]}.solver": a.solver, f"{labels[0]}.status": a.status}
    if "terminal" in a.samples:
        x = np.asarray(a.samples["terminal"], dtype=float)
        x = x.reshape(len(x), -1)
        per_draw, rho_t = [], uniform(x)
        for k in range(draws):
            rng = np.random.default_rng([seed, k] if k else seed)
            y, y2, x0 = (scenario.target.sample(len(x), rng), scenario.target.sample(len(x), rng),
                         scenario.source.sample(len(x), rng))
            if x.shape[1] != y.shape[1]:
                raise CompareError("A's terminal law and its scenario's target differ in dimension")
            if k == 0:
                pi = uniform(y)  # the second moment's sample
            per_draw.append({
                "sinkhorn_to_target": sinkhorn_divergence(x, y, blur=EVAL_BLUR, p=EVAL_P),
                "sinkhorn_floor": sinkhorn_divergence(y2, y, blur=EVAL_BLUR, p=EVAL_P),
                "sinkhorn_source_to_target": sinkhorn_divergence(x0, y, blur=EVAL_BLUR, p=EVAL_P),
            })
        table.update(mean_over_draws(per_draw))
        table["draws"] = draws
    elif a.grid is not None and {"rho", "target", "source"} <= set(a.grid.data_vars):
        rho_t, pi, rho_0 = (cell_measure(final_snapshot(a.grid[k])[0])
                            for k in ("rho", "target", "source"))
        if rho_t[0].shape[1] != pi[0].shape[1]:
            raise CompareError("A's terminal law and its scenario's target differ in dimension")
        table["sinkhorn_to_target"] = sinkhorn_divergence(rho_t[0], pi[0], blur=EVAL_BLUR,
                                                          p=EVAL_P, a=rho_t[1], b=pi[1])
        table["sinkhorn_floor"] = 0.0
        table["sinkhorn_source_to_target"] = sinkhorn_divergence(
            rho_0[0], pi[0], blur=EVAL_BLUR, p=EVAL_P, a=rho_0[1], b=pi[1])
    else:
        raise CompareError("A has neither terminal samples nor rho, target and source on a grid")
    table[f"{labels[0]}.second_moment"] = _second_moment(rho_t)
    table[f"{labels[1]}.second_moment"] = _second_moment(pi)
    return table
