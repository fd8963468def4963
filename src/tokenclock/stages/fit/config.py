"""The fit section of the config (FitConfig: the models, the class thresholds, the grid and the
Levenberg-Marquardt settings, where and how fast to fit). Reads and writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tokenclock.errors import ConfigError


@dataclass
class FitConfig:
    """Settings of the fit stage (section `fit` of a config file)."""

    axis: str = "step"
    """Column of trace/axis.parquet used as x (u = ln x); results go to RUN/fit/."""
    extra_axes: list[str] = field(default_factory=lambda: ["cum_lr"])
    """Other clocks also fitted, into RUN/fit/<axis>/; columns missing from axis.parquet are
    skipped with a warning."""
    max_events: int = 2
    """Most sigmoid events per token: 0 (flat/linear only), 1, 2 or 3 (each chosen per token by
    BIC; three events need >= 13 checkpoints and cost about twice the fit time of two)."""
    penalty: str = "bic"
    """How models of different size are weighed per token. `bic`: K ln(SSE/K) + p ln K. `bic_small_k`:
    the penalty p ln K grows by K / (K - p - 1) (the small-sample factor of AICc), so a model with
    p close to the K points along the axis pays more, and one with p >= K - 1 is no candidate:
    for sparse axes (a study's D and M axes have 8-15 points, a T axis 30-100)."""
    rule: str = "default"
    """A label of the settings above, recorded in fit/summary.json: a study names the rule it
    chose for its sparse axes (study.axis_fit_rules: two_events, one_event, wide, bic_small_k)."""
    min_drop_nats: float = 0.5
    """Smallest |a| (nats) that counts as a learning event / a rise; smaller changes are `flat`."""
    min_r2: float = 0.5
    """Below this r2 a trajectory with a large spread is `irregular`."""
    irregular_spread_nats: float = 1.0
    """Spread (90th - 10th percentile of losses) above which an unexplained trajectory is
    `irregular` rather than noisy-`flat`."""
    early_margin: float = 0.03
    """`early` when the dominant midpoint mu < u_min + early_margin * span (0: strictly outside
    the observed range; the default also counts midpoints within ~1 checkpoint of the edge)."""
    late_margin: float = 0.03
    """`late` when mu > u_max - late_margin * span."""
    mu_margin: float = 0.25
    """Midpoints may lie this fraction of the span beyond the observed u range; such an event is
    censored (fit/events.parquet column censored: left or right), its a and mu not measured."""
    loss_floor: float | None = 0.0
    """Lowest level (nats) a fitted curve may reach in the observed range: b >= it, and the curve
    at every checkpoint stays >= it (a cross-entropy is >= 0). null: no floor (for trajectories
    that are not losses)."""
    a_max_noise_sds: float = 2.0
    """Slack of the amplitude bounds, in noise SDs (estimated from consecutive differences): the
    change one event makes between the first and the last checkpoint is at most the trajectory's
    range (max - min) plus this slack, and |a| at most the highest observed loss minus loss_floor
    plus this slack (a censored event cannot claim more than the loss can move)."""
    width_floor: str = "spacing"
    """How the smallest width is set. `spacing`: w_min_spacing x the local checkpoint spacing at
    the event's midpoint (curves.local_spacing; a projection after every LM step, and the grid's
    smallest width reaches the smallest floor; with it the grid skips cells whose exact |a| the LM
    would clamp, and outliers.py's single-checkpoint rules apply). `span`: w_min_frac x the span
    of u, a box bound (the rule before issue 18; reproduces those fits exactly)."""
    w_min_spacing: float = 0.1
    """`spacing` rule: the smallest width as a multiple of the local checkpoint spacing in ln x.
    At 0.1 a logistic is a step at the checkpoints (s = 0.993 half a gap away); measured with
    benchmarks/fit_bench.py, 0.1 keeps sharp steps (true width 0.1-2 gaps) within 1.05 of scipy's
    best SSE at the 95th percentile, 0.25 and 0.5 do not."""
    w_min_frac: float = 0.02
    """`span` rule: the smallest width as a fraction of the span of u."""
    excursion_spacings: float = 3.0
    """`spacing` rule: a rise and a fall (either order) whose midpoints lie within this many local
    checkpoint spacings of each other are a spike at one or two checkpoints, not two learning
    events; the two-event model is not a candidate for that token (0: off; `span` rule: off)."""
    edge_share: float = 0.9
    """`spacing` rule: an event that makes more than this share of its observed change between the
    first two or the last two checkpoints is an outlier at the edge, not an event; a model with
    such an event is not a candidate for that token (1: off; `span` rule: off). outliers.py."""
    resolution_bins: int = 10
    """ln-time bins over the observed u range for the unresolved shares in fit/summary.json."""
    w_max_frac: float = 0.5
    """Largest width, as a fraction of the span of u."""
    grid_mu: int = 32
    """Grid cells along mu for the initial guess."""
    grid_w: int = 6
    """Grid cells along w (log-spaced) for the initial guess."""
    pair_grid_mu: int = 16
    """Coarse grid along mu for the joint two-event starting point (all pairs of cells)."""
    pair_grid_w: int = 4
    """Coarse grid along w for the joint two-event starting point."""
    lm_iters: int = 20
    """Levenberg-Marquardt iterations per model (stops earlier when no token improves)."""
    uncertainty: bool = False
    """Also compute the standard error of each mu from the LM Jacobian (events column mu_se)."""
    chunk_tokens: int = 32768
    """Trajectories fitted at once; bounds memory (about 4 KB per trajectory at K = 64)."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, ..."""
    dtype: str = "float32"
    """Compute precision on standardized trajectories: float32 (fast) or float64."""
    threads: int = 1
    """torch CPU threads for the fit (0: torch's default). 1 is the robust default: the fit is
    many small elementwise ops, and OpenMP threads collapse (10x slower) when a core is shared."""
    workers: int = 0
    """Processes that fit chunks in parallel on the CPU, each single-threaded (0: one per core
    when there are at least 8 chunks, else 1; 1: in this process). Results do not depend on it."""

    def __post_init__(self) -> None:
        if not self.axis or not isinstance(self.axis, str):
            raise ConfigError("fit.axis must be a column name of the trace's axis.parquet", "e.g. step")
        self.extra_axes = [a for a in (self.extra_axes or []) if a != self.axis]
        if self.max_events not in (0, 1, 2, 3):
            raise ConfigError(f"fit.max_events must be 0, 1, 2 or 3, got {self.max_events!r}",
                              "use 2 (the default), 3 for tokens with three stages (rise, fall back, "
                              "drop), or 0-1 for fewer")
        if self.penalty not in ("bic", "bic_small_k"):
            raise ConfigError(f"fit.penalty must be bic or bic_small_k, got {self.penalty!r}")
        if self.loss_floor is not None and not -float("inf") < self.loss_floor < float("inf"):
            raise ConfigError(f"fit.loss_floor must be a finite number or null, got "
                              f"{self.loss_floor}", "use 0 for a loss in nats, or null for no floor")
        for name in ("min_drop_nats", "irregular_spread_nats", "mu_margin", "early_margin",
                     "late_margin", "a_max_noise_sds"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"fit.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_r2 <= 1:
            raise ConfigError(f"fit.min_r2 must be in [0, 1], got {self.min_r2}")
        if not 0 < self.w_min_frac < self.w_max_frac:
            raise ConfigError(f"fit needs 0 < w_min_frac < w_max_frac, got {self.w_min_frac}, "
                              f"{self.w_max_frac}")
        if self.width_floor not in ("spacing", "span"):
            raise ConfigError(f"fit.width_floor must be spacing or span, got {self.width_floor!r}")
        if not 0 < self.w_min_spacing < float("inf") or self.resolution_bins < 1 \
                or not self.excursion_spacings >= 0 or not 0 < self.edge_share <= 1:
            raise ConfigError(f"fit needs w_min_spacing > 0, excursion_spacings >= 0, "
                              f"0 < edge_share <= 1 and resolution_bins >= 1, got "
                              f"{self.w_min_spacing}, {self.excursion_spacings}, "
                              f"{self.edge_share}, {self.resolution_bins}")
        if self.grid_mu < 2 or self.grid_w < 1 or self.pair_grid_mu < 2 or self.pair_grid_w < 1:
            raise ConfigError("fit.grid_mu, fit.pair_grid_mu must be >= 2 and fit.grid_w, "
                              "fit.pair_grid_w >= 1")
        if self.lm_iters < 0 or self.chunk_tokens < 1 or self.threads < 0 or self.workers < 0:
            raise ConfigError("fit.lm_iters, fit.threads must be >= 0 and fit.chunk_tokens >= 1")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"fit.dtype must be float32 or float64, got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(f"fit.device {self.device!r} is not a torch device",
                              "use cpu, cuda or cuda:N")

