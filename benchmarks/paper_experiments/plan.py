"""What to train: the scales, the four experiments (lc, lf, ablation, tl; described in the docstring of
``benchmarks/experiments.py``, the command) as lists of training runs, and the runs they share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

LOW, HIGH = "pbe_u", "r2scan"  # fidelity names of the teacher-labelled benchmark, lowest first
STATS = ("mae", "rmse")
TEACHER_SENTENCE = ("**Labels come from teacher models (CHGNet 0.3.0 = pbe_u, CHGNet r2scan = r2scan), "
                    "not from DFT.**")
DFT_SENTENCE = ("**Labels are real DFT (GPAW, PBE+U): gpaw_nonmag non-spin-polarised at 350 eV, gpaw_afm "
                "spin-polarised from the antiferromagnetic start at 600 eV; see benchmarks/data/dft/DATA_CARD.md.**")
#: role -> file in --data, teacher benchmark (benchmarks/make_data.py)
TEACHER_FILES = {"high": "lmfp_r2scan_train.extxyz.gz", "low": "lmfp_pbe_u_train.extxyz.gz",
                 "test": "lmfp_r2scan_test.extxyz.gz", "paired_high": "lmfp_paired_r2scan.extxyz.gz",
                 "paired_low": "lmfp_paired_pbe_u.extxyz.gz"}
#: role -> file, real DFT (benchmarks/make_dft_data.py --collect); the paired structures are those in both
#: the high and the low file
DFT_FILES = {"high": "lmfp_gpaw_afm_train.extxyz.gz", "low": "lmfp_gpaw_nonmag.extxyz.gz",
             "test": "lmfp_gpaw_afm_test.extxyz.gz"}
WARM = "chgnet-0.3.0"  # the pretrained model warm-started runs begin from (a key of mf_calc.constants.WARM_STARTS)

ALL = None  # "all frames" in n_high / n_low


# ====================================================================== scales

@dataclass(frozen=True)
class Scale:
    """How big every experiment is. ``None`` in an N list means "all frames"."""

    name: str
    model: dict  # MFConfig size overrides ({} = paper sizes)
    epochs: int
    seeds: tuple[int, ...]
    experiments: tuple[str, ...]  # run by default
    lc_n: tuple  # learning-curve N values
    lf_n_high: tuple  # N of the low-fidelity sweep
    lf_n_low: tuple  # n_low values of the sweep (0 = single-fidelity)
    ablation_n: int
    tl_n: tuple
    n_low: int | None  # low-fidelity frames in lc / ablation / tl runs (None = all)
    max_test: int | None = None  # first test frames used (None = all)
    max_paired: int = 200  # Δ-learning uses min(N, max_paired) paired structures
    speed: dict = field(default_factory=dict)  # reference training speed, structures/s, by device type
    about: str = ""
    low: str = LOW  # fidelity names of the data
    high: str = HIGH
    data: str = "data"  # default --data, relative to benchmarks/
    files: dict = field(default_factory=lambda: dict(TEACHER_FILES))  # role -> file in --data
    labels: str = TEACHER_SENTENCE
    labels_short: str = "teacher labels, not DFT"  # on every plot
    lc_variants: tuple = ("single", "mf")  # series of the learning curves (LC_VARIANTS)
    ablation_init: str = "scratch"  # where the ablation's models start
    warm_epochs: int | None = None  # epochs of warm-started runs (None = epochs)
    warm_speed: dict = field(default_factory=dict)  # structures/s of the pretrained model's size ({} = speed)
    low_fraction: float | None = None  # MF runs train each epoch on a fresh random share of their low-fidelity
    # frames (TrainConfig.fidelity_fraction); None = all of them every epoch (the paper)
    levers_n: int | None = None  # N of the levers experiment (LEVERS; None: the scale has none)

    def epochs_of(self, init: str) -> int:
        """Epochs of a run that starts from ``init``."""
        return self.warm_epochs if init != "scratch" and self.warm_epochs else self.epochs

    def share_of(self, low_fraction: float | None) -> float:
        """Share of its low-fidelity frames an MF run trains on per epoch when it asks for ``low_fraction``
        (None: the scale's; 1.0 = all)."""
        return low_fraction or self.low_fraction or 1.0

    def speed_of(self, init: str, device: str) -> float:
        """Reference training speed (structures/s) of a run from ``init`` on a device type."""
        speeds = self.warm_speed if init != "scratch" and self.warm_speed else self.speed
        return speeds.get(device, 1.0)


TINY_MODEL = dict(atom_fea_dim=16, bond_fea_dim=16, angle_fea_dim=16, num_radial=7, num_angular=7, n_conv=2,
                  atom_conv_hidden_dim=16, bond_conv_hidden_dim=16, mlp_hidden_dims=(16,))


CPU_MODEL = dict(atom_fea_dim=32, bond_fea_dim=32, angle_fea_dim=32, n_conv=3, atom_conv_hidden_dim=32,
                 bond_conv_hidden_dim=32, mlp_hidden_dims=(32, 32))


SCALES = {
    "smoke": Scale(
        name="smoke", model=TINY_MODEL, epochs=2, seeds=(0,), experiments=("lc", "lf", "ablation", "tl"),
        lc_n=(4, 8), lf_n_high=(4, 8), lf_n_low=(0, 6, 12), ablation_n=4, tl_n=(4, 8), n_low=12, max_test=16,
        speed={"cpu": 15.0, "cuda": 40.0},
        about="every code path on a handful of frames with a tiny model; the numbers mean nothing"),
    "cpu": Scale(
        name="cpu", model=CPU_MODEL, epochs=6, seeds=(0, 1, 2), experiments=("lc", "ablation"),
        lc_n=(50, 100, 400), lf_n_high=(50, 400), lf_n_low=(0, 100, 200, 400), ablation_n=100, tl_n=(50, 100, 400),
        n_low=200, speed={"cpu": 3.8, "cuda": 60.0},
        about=("the headline learning curve and the ablation with a reduced model (32 features, 3 convolutions), "
               "6 epochs and 200 low-fidelity frames: a few hours on 2 CPU cores")),
    "dft": Scale(
        name="dft", model={}, epochs=60, seeds=(0, 1, 2), experiments=("lc", "lf", "ablation", "tl", "levers"),
        lc_n=(10, 25, 50, 100, ALL), lf_n_high=(25,), lf_n_low=(0, 100, 200, ALL), ablation_n=50,
        tl_n=(10, 25, 50, 100, ALL), n_low=ALL, speed={"cpu": 3.0, "cuda": 60.0},
        low="gpaw_nonmag", high="gpaw_afm", data="data/dft", files=dict(DFT_FILES), labels=DFT_SENTENCE,
        labels_short="real DFT labels (GPAW PBE+U)",
        lc_variants=("single", "mf", "finetune", "mf-warm"), ablation_init=WARM, levers_n=25,
        about=("real DFT (issue 13): non-magnetic gpaw_nonmag helping magnetic gpaw_afm, from scratch and from "
               "pretrained CHGNet 0.3.0 (paper sizes, 60 epochs, 3 seeds): for a GPU")),
    "paper": Scale(
        name="paper", model={}, epochs=60, seeds=(0, 1, 2), experiments=("lc", "lf", "ablation", "tl"),
        lc_n=(50, 100, 200, 400, 800, ALL), lf_n_high=(50, 400), lf_n_low=(0, 200, 400, 800, ALL), ablation_n=100,
        tl_n=(50, 100, 200, 400, 800, ALL), n_low=ALL, speed={"cpu": 1.5, "cuda": 60.0},
        about="the paper's settings (64 features, 4 convolutions, 60 epochs, all N, 3 seeds): for a GPU"),
}


SCALES["dft-cpu"] = replace(
    SCALES["dft"], name="dft-cpu", model=CPU_MODEL, epochs=40, experiments=("lc", "ablation", "levers"), warm_epochs=15,
    low_fraction=0.25, speed={"cpu": 10.0, "cuda": 60.0}, warm_speed={"cpu": 2.7, "cuda": 60.0},
    about=("the real-DFT experiments sized for 2 CPU cores: runs from scratch with the reduced model (32 features, "
           "3 convolutions) for 40 epochs, warm starts of CHGNet 0.3.0 (its own size) for 15, MF runs on a fresh "
           "random 25 % of the gpaw_nonmag frames each epoch; 3 seeds"))


METHODS = ("single", "mf", "transfer", "delta")


METHOD_NAMES = {"single": "single-fidelity (N)", "mf": "MF-CHGNet", "transfer": "transfer learning",
                "delta": "Δ-learning", "finetune": "fine-tuned CHGNet 0.3.0", "mf-warm": "MF-CHGNet from CHGNet 0.3.0"}


BAR = "\u0304"  # combining overline: "C̄" = C without its fidelity dependence


ABLATION = {  # variant -> (method, modules), paper Fig. 4
    "N": ("single", ""), "F": ("mf", "EMRC"), "C": ("mf", "C"), "E": ("mf", "E"), "M": ("mf", "M"),
    "R": ("mf", "R"), "C" + BAR: ("mf", "EMR"), "E" + BAR: ("mf", "MRC"), "M" + BAR: ("mf", "ERC"),
    "R" + BAR: ("mf", "EMC"),
}


@dataclass(frozen=True)
class Run:
    """One training run of one experiment. ``n_high``/``n_low``: frame counts (None = all).

    Runs with equal ``key`` are the same training and are done once for all experiments that use them.
    """

    experiment: str
    method: str
    n_high: int | None
    n_low: int | None = 0
    modules: str = ""
    seed: int = 0
    variant: str = ""  # ablation or learning-curve label, e.g. "C̄" or "finetune"
    init: str = "scratch"  # "scratch" or a pretrained model name (warm start)
    low_fraction: float | None = None  # MF: share of the low-fidelity frames per epoch (None: the scale's)
    frozen: bool = False  # embeddings and convolutions fixed (TRANSFER_FROZEN); fidelity embedding and heads learn

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {METHODS}")
        if self.method != "mf":  # plain CHGNet everywhere else
            object.__setattr__(self, "modules", "")
        if self.method == "single":  # no low-fidelity data
            object.__setattr__(self, "n_low", 0)
        if self.method != "mf":
            object.__setattr__(self, "low_fraction", None)

    @property
    def label(self) -> str:
        return self.variant or self.method

    @property
    def key(self) -> str:
        """Identity of the training (experiment and label left out)."""
        warm = "" if self.init == "scratch" else f"-{self.init}"
        share = "" if self.low_fraction is None else f"-share{self.low_fraction:g}"
        return (f"{self.method}-{self.modules or 'plain'}{warm}{'-frozen' if self.frozen else ''}"
                f"-nh{count_text(self.n_high)}-nl{count_text(self.n_low)}{share}-s{self.seed}")


def count_text(n: int | None) -> str:
    return "all" if n is None else str(n)


LC_VARIANTS = {  # learning-curve series -> (method, modules, init)
    "single": ("single", "", "scratch"), "mf": ("mf", "EMRC", "scratch"),
    "finetune": ("single", "", WARM),  # what a user does today: fine-tune pretrained CHGNet on the high fidelity
    "mf-warm": ("mf", "EMRC", WARM),
}


def lc_runs(scale: Scale, seed: int) -> Iterator[Run]:
    for n in scale.lc_n:
        for name in scale.lc_variants:
            method, modules, init = LC_VARIANTS[name]
            variant = "" if name == method else name
            yield Run("lc", method, n, scale.n_low, modules, seed, variant, init)


def lf_runs(scale: Scale, seed: int) -> Iterator[Run]:
    for n in scale.lf_n_high:
        for n_low in scale.lf_n_low:
            method = "single" if n_low == 0 else "mf"
            yield Run("lf", method, n, n_low, "EMRC", seed)


def ablation_runs(scale: Scale, seed: int) -> Iterator[Run]:
    for variant, (method, modules) in ABLATION.items():
        yield Run("ablation", method, scale.ablation_n, scale.n_low, modules, seed, variant, scale.ablation_init)


def tl_runs(scale: Scale, seed: int) -> Iterator[Run]:
    for n in scale.tl_n:
        for method in ("mf", "transfer", "delta"):
            yield Run("tl", method, n, scale.n_low, "EMRC", seed)


LEVERS = {  # variant -> (method, low-fidelity share per epoch (None: the scale's), trunk frozen)
    "finetune": ("single", None, False), "finetune, trunk frozen": ("single", None, True),
    "MF, 5 % low/epoch": ("mf", 0.05, False), "MF, 25 % low/epoch": ("mf", 0.25, False),
    "MF, all low/epoch": ("mf", 1.0, False), "MF, trunk frozen": ("mf", None, True),
}


def levers_runs(scale: Scale, seed: int) -> Iterator[Run]:
    """Knobs that set how much the low-fidelity frames pull a warm-started MF-CHGNet (issue 13), at N = levers_n:
    their share per epoch, and a frozen trunk (only the fidelity embedding, readouts, magmom head and compositions
    learn), next to fine-tuning CHGNet 0.3.0 with and without that frozen trunk. A share equal to the scale's own
    is stored as the scale's, so such a run is the learning curve's."""
    if scale.levers_n is None:
        return
    for variant, (method, share, frozen) in LEVERS.items():
        if share == scale.share_of(None):
            share = None
        yield Run("levers", method, scale.levers_n, scale.n_low, "EMRC", seed, variant, WARM, share, frozen)


EXPERIMENTS: dict[str, Callable[[Scale, int], Iterator[Run]]] = {
    "lc": lc_runs, "lf": lf_runs, "ablation": ablation_runs, "tl": tl_runs, "levers": levers_runs}


def resolve(n: int | None, available: int) -> int | None:
    """A requested frame count, or None (= all) when it asks for all the available frames or more."""
    return None if n is None or n >= available else int(n)


def build_plan(experiments: Sequence[str], scale: Scale, seeds: Sequence[int], sizes: dict[str, int]) -> list[Run]:
    """Every (experiment, run) pair, counts resolved against the data sizes (frames per role). A pair that
    resolves to one already planned (N = 100 and N = all with 90 frames) is planned once, so no seed counts twice."""
    plan = {}
    for name in experiments:
        for seed in seeds:
            for run in EXPERIMENTS[name](scale, seed):
                n_low = run.n_low if run.n_low == 0 else resolve(run.n_low, sizes["low"])
                run = replace(run, n_high=resolve(run.n_high, sizes["high"]), n_low=n_low)
                plan.setdefault((name, run.label, run.key), run)
    return list(plan.values())


def unique_runs(plan: Iterable[Run]) -> list[Run]:
    """One run per training key, first occurrence first."""
    first: dict[str, Run] = {}
    for run in plan:
        first.setdefault(run.key, run)
    return list(first.values())


def restrict_n(scale: Scale, keep: tuple) -> Scale:
    """The scale with only the N values in ``keep`` in its lc, lf and tl sweeps (ablation N unchanged)."""
    def pick(values):
        return tuple(n for n in values if n in keep)
    if not (set(keep) & (set(scale.lc_n) | set(scale.lf_n_high) | set(scale.tl_n))):
        raise SystemExit(f"--n-high {list(keep)} keeps none of scale {scale.name}'s N values "
                         f"{sorted(set(scale.lc_n) | set(scale.tl_n), key=str)}")
    return replace(scale, lc_n=pick(scale.lc_n), lf_n_high=pick(scale.lf_n_high), tl_n=pick(scale.tl_n))
