"""Mean squared displacement (MSD), diffusion coefficients per axis and the Arrhenius fit, from any trajectory.

Conventions
-----------
- Positions are **unwrapped** frame to frame from fractional displacements (minimum image), so the
  analysis works on wrapped trajectories from any code too, provided no atom moves more than half a
  cell between two frames (write frames every ≤ 50 fs). With a changing cell (NPT) each increment is
  converted with the cell of the later frame.
- **Drift removal** (``drift``): ``"framework"`` (default) subtracts the mass-weighted centre-of-mass
  displacement of every atom that is *not* the diffusing species (the P-O-TM host lattice): Li
  displacements are then measured relative to the host, which also removes the spurious lattice
  drift stochastic thermostats give. ``"all"`` subtracts the centre of mass of the whole cell (zero
  anyway for momentum-conserving integrators); ``None`` keeps raw displacements.
- MSD(τ) is averaged over all atoms of the species and all time origins (τ up to
  ``max_lag_fraction`` of the run, default 0.5). Per axis: MSD_x = ⟨Δx²⟩ etc. (x, y, z Cartesian; for the
  Pnma cells built by ``mf_calc.lmfp`` x ∥ a, y ∥ b = [010], the Li channel, z ∥ c).
- ``resolved[axis]`` is True when D > 2σ; unresolved values still enter the Arrhenius fit if D > 0, with
  their (large) error as weight.
- D from a linear fit MSD = 2 d D τ + c over τ ∈ [skip·τ_max, τ_max] (``skip`` = 0.2 drops the ballistic /
  cage part): d = 3 for the total, d = 1 per axis. Error: the run is cut into ``n_blocks`` contiguous
  blocks, D is fitted in each block over the same relative window, error = std/√n_blocks; when the run
  is too short for blocks, the standard error of the regression slope is used (an under-estimate,
  because MSD points are correlated). Units: Å²/ps and cm²/s (1 Å²/ps = 1e-4 cm²/s).
- Arrhenius: ln D = ln D0 − Ea / (k_B T), weighted least squares in ln D (weights from D errors),
  Ea in eV, D extrapolated to 300 K with a 1-σ interval. Temperatures where D ≤ 0 are excluded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.units import kB

from mf_calc.structures import read_structures

A2PS_TO_CM2S = 1e-4
AXES = ("x", "y", "z")


def unwrapped_positions(frames) -> np.ndarray:
    """(n_frames, n_atoms, 3) Cartesian positions unwrapped through periodic boundaries (Å)."""
    if len(frames) == 0:
        raise ValueError("no frames")
    n = len(frames[0])
    out = np.empty((len(frames), n, 3))
    out[0] = frames[0].get_positions()
    prev = frames[0].get_scaled_positions(wrap=False)
    for k in range(1, len(frames)):
        if len(frames[k]) != n:
            raise ValueError(f"frame {k} has {len(frames[k])} atoms, frame 0 has {n}")
        s = frames[k].get_scaled_positions(wrap=False)
        ds = s - prev
        ds -= np.round(ds)
        out[k] = out[k - 1] + ds @ np.asarray(frames[k].cell)
        prev = s
    return out


def frame_times(frames, frame_interval_ps: float | None = None) -> np.ndarray:
    """Times (ps) from ``info['md_time_ps']`` (written by ``run_md``) or a given frame interval."""
    if frame_interval_ps is not None:
        return np.arange(len(frames)) * float(frame_interval_ps)
    if all("md_time_ps" in f.info for f in frames):
        return np.array([float(f.info["md_time_ps"]) for f in frames])
    raise ValueError("frames carry no 'md_time_ps'; give frame_interval_ps (time between frames, ps)")


def framework_drift(positions, masses, mask_species, drift: str | None = "framework") -> np.ndarray:
    """(frames, 1, 3) displacement (Å) to subtract from unwrapped positions: the mass-weighted centre of mass of
    the atoms not in ``mask_species`` (``"framework"``) or of all atoms (``"all"``) since frame 0; zero for None."""
    if drift is None or drift == "none":
        return np.zeros((positions.shape[0], 1, 3))
    if drift == "framework":
        sel = ~mask_species
        if not sel.any():
            raise ValueError("drift='framework' needs atoms other than the diffusing species")
    elif drift == "all":
        sel = np.ones_like(mask_species)
    else:
        raise ValueError(f"drift must be 'framework', 'all' or None, got {drift!r}")
    w = masses[sel] / masses[sel].sum()
    com = np.einsum("fni,n->fi", positions[:, sel], w)
    return (com - com[0])[:, None, :]


def _msd_curve(r: np.ndarray, max_lag: int) -> np.ndarray:
    """(max_lag+1, 3) per-axis MSD averaged over atoms and time origins; r: (F, N, 3)."""
    out = np.zeros((max_lag + 1, 3))
    for lag in range(1, max_lag + 1):
        d = r[lag:] - r[:-lag]
        out[lag] = (d * d).mean(axis=(0, 1))
    return out


def _fit_slope(t, y, with_error=False):
    """Least-squares slope of y(t) (``scipy.stats.linregress``), with its standard error when asked."""
    from scipy.stats import linregress

    fit = linregress(t, y)
    return (float(fit.slope), float(fit.stderr)) if with_error else float(fit.slope)


@dataclass(frozen=True)
class Trajectory:
    """Unwrapped positions (F, N, 3) Å at times_ps (F,) of atoms ``symbols`` (``masses`` for drift removal)."""

    positions: np.ndarray
    times_ps: np.ndarray
    symbols: Sequence[str]
    masses: np.ndarray | None = None

    @classmethod
    def of(cls, frames, frame_interval_ps: float | None = None) -> Trajectory:
        """A Trajectory as it is, or of a list of ase.Atoms or a trajectory file (times from ``info`` or
        ``frame_interval_ps``)."""
        if isinstance(frames, Trajectory):
            return frames
        if isinstance(frames, (str, Path)):
            frames = read_structures(frames)
        return cls(unwrapped_positions(frames), frame_times(frames, frame_interval_ps),
                   frames[0].get_chemical_symbols(), frames[0].get_masses())


def _species_displacements(traj: Trajectory, species: str, drift: str | None) -> tuple[np.ndarray, float]:
    """Positions of ``species`` with the drift removed (F, n, 3) and the time step (ps); checks the input."""
    symbols = np.asarray(traj.symbols)
    mask = symbols == species
    if not mask.any():
        raise ValueError(f"no {species} atoms in the trajectory")
    if len(traj.positions) < 8:
        raise ValueError(f"need at least 8 frames for an MSD fit, got {len(traj.positions)}")
    dt = np.diff(np.asarray(traj.times_ps, dtype=float))
    if not np.allclose(dt, dt[0], rtol=1e-3, atol=1e-9) or dt[0] <= 0:
        raise ValueError("frames must be equally spaced in time (check for duplicated or missing frames)")
    positions = np.asarray(traj.positions, dtype=float)
    masses = np.ones(len(symbols)) if traj.masses is None else np.asarray(traj.masses, dtype=float)
    return (positions - framework_drift(positions, masses, mask, drift))[:, mask], float(dt[0])


DIMENSIONS = {"total": 3, "x": 1, "y": 1, "z": 1}


def _slopes(r: np.ndarray, dt: float, skip: float, max_lag_fraction: float) -> tuple[dict, dict, dict]:
    """MSD curves (Å²), D (Å²/ps) and its regression error per key of DIMENSIONS, and the fit window (ps)."""
    max_lag = max(int((len(r) - 1) * max_lag_fraction), 4)
    msd_xyz = _msd_curve(r, max_lag)
    t = np.arange(max_lag + 1) * dt
    lo = max(int(round(skip * max_lag)), 1)
    curves = {"total": msd_xyz.sum(axis=1), **{ax: msd_xyz[:, i] for i, ax in enumerate(AXES)}}
    fits = {key: _fit_slope(t[lo:], y[lo:], with_error=True) for key, y in curves.items()}
    D = {key: slope / (2 * DIMENSIONS[key]) for key, (slope, _) in fits.items()}
    err = {key: e / (2 * DIMENSIONS[key]) for key, (_, e) in fits.items()}
    return curves | {"t_ps": t, "window": (float(t[lo]), float(t[max_lag]))}, D, err


def _block_errors(r: np.ndarray, dt: float, skip: float, max_lag_fraction: float, n_blocks: int):
    """D per block of the run and the error of the mean over blocks (Å²/ps), or None when blocks are too short."""
    block_len = len(r) // n_blocks if n_blocks > 1 else 0
    if n_blocks <= 1 or block_len < 16:
        return [], None
    blocks = [_slopes(r[k * block_len:(k + 1) * block_len], dt, skip, max_lag_fraction)[1] for k in range(n_blocks)]
    return blocks, {key: float(np.std([b[key] for b in blocks], ddof=1) / math.sqrt(n_blocks)) for key in DIMENSIONS}


def msd_analysis(frames, species: str = "Li", frame_interval_ps: float | None = None, drift: str | None = "framework",
                 skip: float = 0.2, max_lag_fraction: float = 0.5, n_blocks: int = 4) -> dict:
    """MSD and diffusion coefficients of ``species`` (total and per axis).

    frames: list of ase.Atoms, a trajectory path, or a :class:`Trajectory` (positions already unwrapped).
    Returns a dict with t_ps, msd / msd_x / msd_y / msd_z (Å²), D_A2_per_ps / D_cm2_per_s / D_err_*
    dicts keyed "total", "x", "y", "z", the fit window, the error method and counts.
    """
    traj = Trajectory.of(frames, frame_interval_ps)
    r, dt = _species_displacements(traj, species, drift)
    curves, D, D_err = _slopes(r, dt, skip, max_lag_fraction)
    blocks, block_err = _block_errors(r, dt, skip, max_lag_fraction, n_blocks)
    if block_err is not None:
        D_err, err_method = block_err, f"std of {n_blocks} blocks / sqrt({n_blocks})"
    else:
        err_method = "regression standard error (run too short for blocks)"
    return {
        "species": species, "n_atoms": int(r.shape[1]), "n_frames": len(r), "frame_interval_ps": dt,
        "duration_ps": float(traj.times_ps[-1] - traj.times_ps[0]), "drift": drift, "t_ps": curves["t_ps"],
        "msd": curves["total"], **{f"msd_{ax}": curves[ax] for ax in AXES}, "fit_window_ps": curves["window"],
        "D_A2_per_ps": {k: float(v) for k, v in D.items()},
        "D_err_A2_per_ps": {k: float(v) for k, v in D_err.items()},
        "D_cm2_per_s": {k: float(v) * A2PS_TO_CM2S for k, v in D.items()},
        "D_err_cm2_per_s": {k: float(v) * A2PS_TO_CM2S for k, v in D_err.items()},
        "D_blocks_A2_per_ps": blocks,
        "resolved": {k: bool(D[k] > 0 and D[k] > 2 * D_err[k]) for k in D},
        "error_method": err_method,
    }


def arrhenius_fit(temperatures_K, D_cm2_per_s, D_err=None, T_target_K: float = 300.0) -> dict:
    """Fit ln D = ln D0 − Ea/(k_B T); returns Ea (eV) ± error, D0, D(T_target) (cm²/s) with 1-σ bounds.

    Points with D ≤ 0 (no measurable diffusion) are excluded and listed. Weighted by 1/σ(ln D)² when
    errors are given (σ(ln D) = D_err / D, floored at 5 %), else unweighted.
    """
    T = np.asarray(temperatures_K, dtype=float)
    D = np.asarray(D_cm2_per_s, dtype=float)
    keep = np.isfinite(D) & (D > 0)
    excluded = [float(x) for x in T[~keep]]
    T, D = T[keep], D[keep]
    if len(T) < 2:
        raise ValueError(f"Arrhenius fit needs >= 2 temperatures with D > 0; have {len(T)} (excluded: {excluded})")
    x = 1.0 / (kB * T)
    y = np.log(D)
    if D_err is not None:
        err = np.asarray(D_err, dtype=float)[keep]
        sig = np.maximum(np.where(np.isfinite(err), err, 0.0) / D, 0.05)
    else:
        sig = np.ones_like(D)
    # y = slope x + ln D0 with slope = -Ea; numpy's weights are 1/σ
    (slope, ln_d0), cov = np.polyfit(x, y, 1, w=1.0 / sig, cov="unscaled")
    resid = y - (slope * x + ln_d0)
    dof = len(T) - 2
    if D_err is None or dof > 0:
        # unweighted: scale by residual variance; weighted with dof>0: inflate if the scatter is larger
        chi2 = float((resid**2 / sig**2).sum() / dof) if dof > 0 else 0.0
        scale = chi2 if D_err is None else max(chi2, 1.0)
        cov = cov * scale
    ea = -slope
    xt = 1.0 / (kB * T_target_K)
    ln_dt = ln_d0 - ea * xt
    # var(ln D0 - Ea xt) with var(Ea) = cov[0, 0], cov(ln D0, Ea) = -cov[0, 1]
    var_t = cov[1, 1] + xt**2 * cov[0, 0] + 2 * xt * cov[0, 1]
    s_t = math.sqrt(max(var_t, 0.0))
    def _exp(v):  # no OverflowError for absurd extrapolations of noisy data
        return float(np.exp(np.clip(v, -700.0, 700.0)))

    return {
        "temperatures_K": T.tolist(),
        "D_cm2_per_s": D.tolist(),
        "excluded_T_K": excluded,
        "Ea_eV": float(ea),
        "Ea_err_eV": float(math.sqrt(max(cov[0, 0], 0.0))),
        "D0_cm2_per_s": _exp(ln_d0),
        "T_target_K": float(T_target_K),
        "D_target_cm2_per_s": _exp(ln_dt),
        "D_target_range_cm2_per_s": (_exp(ln_dt - s_t), _exp(ln_dt + s_t)),
        "n_points": int(len(T)),
        "weighted": D_err is not None,
    }


def format_arrhenius(fit: dict) -> str:
    """One line: Ea ± err (eV) and D at the target temperature (cm²/s) with its 1σ range, or the fit's error."""
    if "error" in fit:
        return fit["error"]
    lo, hi = fit["D_target_range_cm2_per_s"]
    return (f"Ea = {fit['Ea_eV']:.3f} ± {fit['Ea_err_eV']:.3f} eV, D({fit['T_target_K']:.0f} K) = "
            f"{fit['D_target_cm2_per_s']:.2e} cm²/s (1σ {lo:.1e} .. {hi:.1e})")
