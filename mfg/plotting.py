"""Figures of a result (Agg, no display needed), written atomically.

- 1-D grid: density curves rho(., t) at a few stored times (colour = t), the target density if the
  grid holds a ``target`` variable, and the value function U(., T) in a second panel.
- 2-D grid (and marginals over x1, x2 in higher dimension): a row of snapshots of rho at evenly
  spaced stored times on one colour scale, and a panel with the target if present.
- No grid: a scatter of the terminal samples (first two coordinates; a histogram in 1-D), with a
  few trajectories if stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr
import yaml
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from mfg.results import Result


class PlotError(ValueError):
    """Nothing in the result can be plotted; one line."""


#: trajectories drawn in a sample plot
MAX_TRAJECTORIES = 50


def plot_manifold_study(summary: list[dict], scatter: dict[str, np.ndarray | None],
                        target_plane: np.ndarray, path: str | Path, title: str,
                        scatter_title: str) -> Path:
    """The figure of ``cli.py study manifold``, written atomically to ``path``.

    Top: (a) full-dimension and projected (plane-coordinate) debiased Sinkhorn vs dim, log scale,
    one curve per method (colour) and embedding (line style; the d = 2 runs, embedding ``any``,
    start every curve), mean over seeds with min–max bars, the floor (two target draws) and, where
    the summary has it (``sinkhorn_exact``, full dimension only), the figure of the posed problem's
    exact answer (mfg.manifold.exact_metrics).
    ``summary`` rows come from ``mfg.manifold.summarize`` (keys method, embedding, dim and
    (mean, min, max) triples for sinkhorn, sinkhorn_plane and their ``_floor``). Bottom: (b) per
    method, the samples' plane coordinates (n, 2) over the target's ``target_plane`` (m, 2);
    ``scatter[method]`` None for a run that diverged. The view is the target's extent, widened
    by half; the share of samples outside it is given in the panel's title."""
    path = Path(path)
    methods = list(dict.fromkeys(r["method"] for r in summary))
    embeddings = [e for e in dict.fromkeys(r["embedding"] for r in summary) if e != "any"]
    styles = dict(zip(embeddings, ("-", "--", ":", "-."), strict=False))
    fig = Figure(figsize=(5.0 * max(2, len(scatter)), 9.0), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    axes = top.subplots(1, 2)
    for ax, key, label in ((axes[0], "sinkhorn", "full dimension"),
                           (axes[1], "sinkhorn_plane", "projected on the data plane")):
        for i, method in enumerate(methods):
            for emb in embeddings or ["any"]:
                rows = sorted((r for r in summary if r["method"] == method
                               and r["embedding"] in (emb, "any")), key=lambda r: r["dim"])
                dims = np.array([r["dim"] for r in rows], dtype=float)
                mean, lo, hi = (np.array([r[key][j] for r in rows]) for j in range(3))
                ax.errorbar(dims, mean, yerr=np.abs([mean - lo, hi - mean]), marker="o",
                            ls=styles.get(emb, "-"), color=f"C{i}", capsize=3,
                            label=f"{method} ({emb})")
        floors: dict[int, list[float]] = {}
        for r in summary:
            floors.setdefault(r["dim"], []).append(r[f"{key}_floor"][0])
        dims_f = sorted(floors)
        ax.plot(dims_f, [np.nanmean(floors[d]) for d in dims_f], "k:", marker="x",
                label="floor (two target draws)")
        exact: dict[int, list[float]] = {}
        for r in summary:
            value = r.get(f"{key}_exact", (np.nan,))[0]
            if np.isfinite(value):
                exact.setdefault(r["dim"], []).append(value)
        if exact:
            dims_e = sorted(exact)
            ax.plot(dims_e, [np.mean(exact[d]) for d in dims_e], "k--", marker="+",
                    label="exact answer of the problem (KL proximal)")
        ax.set_yscale("log", nonpositive="mask")
        ax.set(xlabel="dimension d", ylabel="debiased Sinkhorn (p=2, blur 0.05)", title=label)
        ax.set_xticks(dims_f)
        ax.legend(fontsize=7)
    top.suptitle(f"{title} — mean over seeds, bars min–max")
    lo_t, hi_t = np.percentile(target_plane, [0.5, 99.5], axis=0)
    pad = 0.5 * (hi_t - lo_t)
    view = np.stack([lo_t - pad, hi_t + pad])
    for ax, (method, x) in zip(np.atleast_1d(bottom.subplots(1, len(scatter))), scatter.items(),
                               strict=True):
        ax.scatter(target_plane[:, 0], target_plane[:, 1], s=1, color="0.7", label="target")
        if x is None:
            ax.set_title(f"{method}: diverged")
        else:
            inside = np.all((x >= view[0]) & (x <= view[1]), axis=1)
            ax.scatter(x[:, 0], x[:, 1], s=1, color="C0", label="generated")
            ax.set_title(f"{method} ({100 * (1 - inside.mean()):.1f}% outside the view)")
        ax.set(xlim=view[:, 0], ylim=view[:, 1], aspect="equal", xlabel="q1ᵀx", ylabel="q2ᵀx")
        ax.legend(fontsize=7, markerscale=5, loc="upper right")
    bottom.suptitle(scatter_title)
    save_figure(fig, path)
    return path


def snapshot_indices(nt: int, n_snapshots: int) -> list[int]:
    """``n_snapshots`` evenly spaced indices in 0..nt-1, both ends included (fewer if nt is
    small)."""
    return sorted({int(round(i)) for i in np.linspace(0, nt - 1, max(min(n_snapshots, nt), 1))})


def _title(result: Result) -> str:
    name = ""
    try:
        data = yaml.safe_load(result.scenario_text)
        if isinstance(data, dict):
            name = str(data.get("name", ""))
    except yaml.YAMLError:
        pass
    head = f"{name}: " if name else ""
    return f"{head}{result.solver} ({result.status})"


def marginal_2d(da: xr.DataArray) -> xr.DataArray:
    """Marginal over (x1, x2): rho summed over the other spatial axes times their cell widths."""
    spatial = [d for d in da.dims if d != "t"]
    rest = spatial[2:]
    if not rest:
        return da
    width = float(np.prod([np.mean(np.diff(da[d].values)) for d in rest]))
    return da.sum(rest) * width


def _plot_1d(fig: Figure, grid: xr.Dataset, n_snapshots: int) -> None:
    rho = grid["rho"].transpose("t", ...)
    (xdim,) = [d for d in rho.dims if d != "t"]
    has_u = "U" in grid
    axes = fig.subplots(1, 2 if has_u else 1, squeeze=False)[0]
    ax = axes[0]
    t = rho["t"].values
    cmap = colormaps["viridis"]
    norm = Normalize(float(t.min()), float(t.max()) if t.max() > t.min() else float(t.min()) + 1)
    for i in snapshot_indices(len(t), n_snapshots):
        ax.plot(rho[xdim].values, rho.values[i], color=cmap(norm(t[i])), lw=1.5)
    if "target" in grid:
        target = grid["target"]
        ax.plot(target[target.dims[-1]].values, target.values.ravel(), "k--", lw=1, label="target")
        ax.legend(loc="upper right")
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="t")
    ax.set(xlabel=xdim, ylabel="density", title="rho(x, t)")
    if has_u:
        u = grid["U"]
        u_final = u.isel(t=-1) if "t" in u.dims else u
        x = u_final[xdim].values
        axes[1].plot(x, u_final.values, color="C3")
        rho_final = rho.isel(t=-1).interp({xdim: x}).values
        axes[1].fill_between(
            x, 0, 1, where=rho_final < 1e-3 * np.nanmax(rho_final), color="0.9",
            transform=axes[1].get_xaxis_transform(), label="rho(T) < 1e-3 max",
        )  # fmt: skip
        axes[1].legend(loc="upper right")
        axes[1].set(xlabel=xdim, ylabel="U", title="value function U(x, T)")


def _image(ax: Axes, da: xr.DataArray, vmin: float, vmax: float, title: str) -> object:
    xdim, ydim = [d for d in da.dims if d != "t"][:2]
    mesh = ax.pcolormesh(
        da[xdim].values,
        da[ydim].values,
        da.transpose(ydim, xdim).values,
        vmin=vmin,
        vmax=vmax,
        cmap="magma",
        shading="nearest",
    )
    ax.set(title=title, xlabel=xdim, ylabel=ydim, aspect="equal")
    return mesh


def _plot_2d(fig: Figure, grid: xr.Dataset, n_snapshots: int) -> None:
    rho = marginal_2d(grid["rho"].transpose("t", ...))
    t = rho["t"].values
    picks = snapshot_indices(len(t), n_snapshots)
    target = marginal_2d(grid["target"]) if "target" in grid else None
    n_panels = len(picks) + (target is not None)
    fig.set_size_inches(3.2 * n_panels + 1.0, 3.4)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    vmax = float(max(rho.isel(t=picks).max(), target.max() if target is not None else 0.0))
    mesh = None
    for ax, i in zip(axes, picks, strict=False):
        mesh = _image(ax, rho.isel(t=i), 0.0, vmax, f"t={t[i]:.3g}")
    if target is not None:
        _image(axes[-1], target, 0.0, vmax, "target")
    fig.colorbar(mesh, ax=list(axes), shrink=0.8, label="density")


def _plot_samples(fig: Figure, samples: dict[str, np.ndarray]) -> None:
    x = np.asarray(samples["terminal"], dtype=float)
    x = x.reshape(len(x), -1)
    ax = fig.subplots()
    if x.shape[1] == 1:
        ax.hist(x[:, 0], bins=60, density=True, color="C0")
        ax.set(xlabel="x1", ylabel="density", title="terminal samples")
        return
    traj = samples.get("trajectories")
    if traj is not None:
        traj = np.asarray(traj, dtype=float)
        for j in range(min(MAX_TRAJECTORIES, traj.shape[1])):
            ax.plot(traj[:, j, 0], traj[:, j, 1], color="0.6", lw=0.5)
    ax.scatter(x[:, 0], x[:, 1], s=2, color="C0")
    ax.set(xlabel="x1", ylabel="x2", title="terminal samples", aspect="equal")


def save_figure(fig: Figure, path: Path) -> None:
    """Save to a temporary sibling ``.<name>.tmp-<pid>`` (cleaned up if this process dies: see
    mfg.results.clean_stale_temporaries), then rename onto ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format=(path.suffix.lstrip(".") or "png"), dpi=120)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def plot_result(result: Result, path: str | Path, n_snapshots: int = 5) -> Path:
    """Plot ``result`` (see the module docstring) to ``path`` (format from its suffix, default png).

    Raises :class:`PlotError` (a ValueError) when the result has neither a grid with ``rho``
    nor terminal samples.
    """
    path = Path(path)
    grid = result.grid
    if grid is not None and "rho" in grid:
        dim = len([d for d in grid["rho"].dims if d != "t"])
        fig = Figure(figsize=(11, 4), layout="constrained")
        (_plot_1d if dim == 1 else _plot_2d)(fig, grid, n_snapshots)
    elif "terminal" in result.samples:
        fig = Figure(figsize=(6, 5), layout="constrained")
        _plot_samples(fig, result.samples)
    else:
        raise PlotError("result has neither a density grid nor terminal samples to plot")
    fig.suptitle(_title(result))
    save_figure(fig, path)
    return path


def plot_image_grids(panels: dict[str, np.ndarray], path: str | Path,
                     image_shape: tuple[int, int] = (8, 8), n_rows: int = 10, n_cols: int = 10,
                     value_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    """Panels side by side, each a grid of small grey images (dark = high value), e.g. generated
    and real digits: ``panels`` maps a title to an array (n, h·w) of row-major images, of which
    the first n_rows·n_cols are drawn (empty cells stay white); values are clipped to
    ``value_range``. Written atomically to ``path`` (format from its suffix, default png)."""
    path = Path(path)
    h, w = image_shape
    lo, hi = value_range
    fig = Figure(figsize=(3.2 * len(panels) + 0.4, 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, images) in zip(axes, panels.items(), strict=True):
        images = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        if images.shape[1] != h * w:
            raise ValueError(f"{title}: images have {images.shape[1]} values, not {h}×{w}")
        # a light grey line of one pixel between images; NaN (white) where there is no image
        mosaic = np.full((n_rows * (h + 1) - 1, n_cols * (w + 1) - 1), lo + 0.2 * (hi - lo))
        for i, img in enumerate(images[: n_rows * n_cols]):
            r, c = divmod(i, n_cols)
            mosaic[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = (
                np.clip(img.reshape(h, w), lo, hi))
        for i in range(len(images), n_rows * n_cols):
            r, c = divmod(i, n_cols)
            mosaic[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = np.nan
        ax.imshow(mosaic, cmap="gray_r", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set(title=title, xticks=[], yticks=[])
    save_figure(fig, path)
    return path
