"""Mean ± sample std over seeds of every test error, per (experiment, label, N, n_low), with pandas."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mf_calc.atomic import atomic_write, write_json
from mf_calc.train.dataset import TARGETS

from .plan import STATS, Run, count_text
from .runs import RunStore

GROUP = ["experiment", "label", "n_high", "n_low"]
METRICS = [f"{t}_{stat}" for t in TARGETS for stat in STATS]


def aggregate(plan: list[Run], store: RunStore) -> list[dict]:
    """One row per configuration of ``plan`` (in plan order): ``<t>_<stat>_mean`` / ``_std`` over the seeds
    with a finished run (NaN values skipped; the std needs two seeds), ``n_seeds`` and ``seeds``, the frame
    counts and the mean run time. Configurations without a finished run keep their row with ``n_seeds`` 0."""
    runs = pd.DataFrame([{"experiment": r.experiment, "label": r.label, "method": r.method, "modules": r.modules,
                          "n_high": count_text(r.n_high), "n_low": count_text(r.n_low), "seed": r.seed, "key": r.key}
                         for r in plan], columns=[*GROUP, "method", "modules", "seed", "key"])
    records = {key: store.load(key) for key in runs["key"].unique()}
    finished = pd.DataFrame([{"key": key, **{m: rec["metrics"].get(m) for m in METRICS}, "time_s": rec["time_s"],
                              "n_high_frames": rec["n_high_frames"], "n_low_frames": rec["n_low_frames"]}
                             for key, rec in records.items() if rec is not None],
                            columns=["key", *METRICS, "time_s", "n_high_frames", "n_low_frames"])
    finished[METRICS] = finished[METRICS].astype(float)  # a missing metric (None) is NaN
    done = runs.merge(finished, on="key")
    stats = {f"{m}_{how}": (m, how) for m in METRICS for how in ("mean", "std")}
    table = done.groupby(GROUP, sort=False).agg(
        n_seeds=("seed", "size"), seeds=("seed", list), n_high_frames=("n_high_frames", "first"),
        n_low_frames=("n_low_frames", "first"), **stats, time_s_mean=("time_s", "mean")).reset_index()
    rows = runs.drop_duplicates(GROUP)[[*GROUP, "method", "modules"]].merge(table, on=GROUP, how="left")
    rows = rows[["experiment", "label", "method", "modules", "n_high", "n_low", *table.columns[len(GROUP):]]]
    return [_plain(row) for row in rows.to_dict("records")]


def _plain(row: dict) -> dict:
    """A table row as plain Python: counts as int (None without runs), seeds as a list, errors as float."""
    n = row["n_seeds"]
    row["n_seeds"] = 0 if n is None or (isinstance(n, float) and math.isnan(n)) else int(n)
    row["seeds"] = [int(s) for s in row["seeds"]] if isinstance(row["seeds"], list) else []
    for key in ("n_high_frames", "n_low_frames"):
        value = row[key]
        row[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)
    return {k: float(v) if k.endswith(("_mean", "_std")) else v for k, v in row.items()}


def find(rows: list[dict], **conds) -> dict | None:
    """The first row whose fields equal ``conds``."""
    return next((r for r in rows if all(r[k] == v for k, v in conds.items())), None)


def write_tables(rows: list[dict], out: Path, meta: dict) -> None:
    """``results.csv`` (seeds space-separated, empty cell = no value) and ``results.json`` (with ``meta``)."""
    table = pd.DataFrame(rows)
    if "seeds" in table:
        table["seeds"] = [" ".join(map(str, s)) for s in table["seeds"]]
    atomic_write(out / "results.csv", lambda fh: table.to_csv(fh, index=False))
    write_json(out / "results.json", {**meta, "rows": rows}, indent=1)
