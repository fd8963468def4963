"""The train stage's config: the train section (TrainConfig: optimisation, data order, the
checkpoint schedule, kept training states, the replay zoom), the model section (ModelConfig and its
size PRESETS) and the checkpoint folder train.init_from names. Reads and
writes nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from tokenclock.errors import ConfigError
from tokenclock.stages.train.schedule import checkpoint_steps, lr_at

# What a replay must reproduce to give a run's weights bit for bit: the batch order
# (windows.batch_offsets and make_batch, or the rows of train.data_schedule), the lr schedule, the
# seeded model init and the AdamW parameter groups. Bump it whenever any of them changes: runs
# record it (manifest.json, stages.train.data_order_version) and a zoom refuses a run whose
# version differs or is missing.
DATA_ORDER_VERSION = 1
# Keys that keep more training state or replay part of a run without changing its weights: they
# are not part of a run's identity (stage.py, _check_same_run); the zoom keys are not even recorded.
STATE_KEYS = ("keep_state_steps", "keep_state_all")
EXEC_KEYS = ("threads",)  # how fast a run trains, not which run it is: a resume may change them
ZOOM_KEYS = ("zoom", "zoom_ckpt_per_decade")
ZOOM_FACTOR = 4  # train.zoom_ckpt_per_decade = 0: this many times train.ckpt_per_decade


@dataclass
class TrainConfig:
    """Optimisation, data order and the checkpoint schedule. Saved in the run's manifest."""

    steps: int = 1000
    """Optimizer updates."""
    batch_size: int = 16
    """Sequences per update (global: summed over processes and micro batches)."""
    seq_len: int = 256
    """Tokens per training sequence."""
    lr_peak: float = 3e-3
    """Learning rate after warmup."""
    schedule: str = "cosine"
    """Learning-rate schedule: cosine | wsd (warmup-stable-decay) | constant."""
    warmup_steps: int = 50
    """Steps of linear warmup to lr_peak; in [0, steps]."""
    lr_min_ratio: float = 0.1
    """Final lr = lr_min_ratio * lr_peak."""
    decay_fraction: float = 0.2
    """wsd: share of the steps spent decaying."""
    weight_decay: float = 0.1
    """AdamW weight decay of the matrices (norm weights are not decayed)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    ckpt_per_decade: int = 16
    """Log-spaced checkpoints per factor of 10 in step (0 and 1 included)."""
    ckpt_linear_every: int = 0
    """Also checkpoint every N steps (0 = off)."""
    extra_ckpt_steps: list[int] = field(default_factory=list)
    """Explicit extra checkpoint steps."""
    val_seqs: int = 32
    """Validation sequences scored at every checkpoint."""
    dtype: str = "auto"
    """auto (bf16 autocast where supported) | bf16 | fp32."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    threads: int = 0
    """Torch CPU threads (0 = torch's default)."""
    data_schedule: str | None = None
    """A .npy of int64 (steps, batch_size) sequence start offsets into tokens/train.npy, or the
    folder `tokenclock reshape` wrote it to; None = uniform seeded sampling."""
    init_from: str | None = None
    """A checkpoint folder to start from (its weights, and its optimizer state when it holds
    optimizer.safetensors); training continues at its step (cooldown branches)."""
    keep_state_steps: list[int] = field(default_factory=list)
    """Checkpoints that also keep their optimizer state (ckpt/step_X/optimizer.safetensors), so
    branches (train.init_from) and zooms (train.zoom) can start there; each must be a checkpoint
    step. Not part of the run's identity: changing it never makes a run directory "another run"."""
    keep_state_all: bool = False
    """Keep the optimizer state at every checkpoint (besides keep_state_steps), so a zoom can start
    at any of them. Disk: AdamW's two fp32 moments, 8 bytes per parameter (embeddings included)
    per checkpoint, twice the weights' file (llama-500k with the demo's 4096-token vocabulary,
    836,448 parameters: 6,700,936 bytes per checkpoint, 0.32 GB for the demo's 47). Not part of
    the run's identity."""
    zoom: list[int] | None = None
    """[A, B]: replay steps A..B of the trained run from the newest kept optimizer state at or
    before A (step 0: the seeded init with a fresh AdamW) and add the checkpoints of a denser
    schedule inside [A, B] to ckpt/ (`tokenclock train --zoom A:B`). Not recorded in the run's
    train config: the manifest lists each zoom under stages.train.zooms."""
    zoom_ckpt_per_decade: int = 0
    """Checkpoints per decade inside the zoom (0 = 4 x ckpt_per_decade): each interval of the run's
    own schedule inside [A, B] is split evenly in ln(step) (schedule.zoom_steps)."""
    fsdp: bool = False
    """Under torchrun: shard parameters, gradients and AdamW state (FSDP2) instead of replicating
    them (DDP), for models that do not fit one device."""
    micro_batch_size: int = 0
    """Sequences per forward pass on each process; the global batch is accumulated over
    batch_size / (processes * micro_batch_size) passes (0 = one pass)."""
    compile: bool = False
    """torch.compile the model (GPU throughput; 10-60 s of compiling first)."""
    avg: str = "none"
    """Averaged weights kept beside the trained ones: none | ema, the power-function EMA of
    Karras et al. 2024 (EDM2; window proportional to the step, so constant in ln(step)), saved at
    every checkpoint as RUN/ckpt_avg/step_XXXXXXX/ (a Hugging Face folder); trace it with
    trace.weights=avg. Costs one fused lerp over the parameters per step (stages/train/average.py)."""
    avg_sigma_rel: float = 0.1
    """train.avg=ema: the average's relative width (std of its profile / step); its mean lags the
    step by about this much in ln(step)."""
    data_seed: int | None = None
    """Seed of the batch order (windows.batch_offsets); None = the run's seed. Two runs that differ
    only here share their initial weights and traced tokens: replicates (spectrum --replicate)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "val_seqs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.schedule not in ("cosine", "wsd", "constant"):
            raise ConfigError(f"unknown train.schedule '{self.schedule}'", "use cosine, wsd or constant")
        if self.dtype not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"unknown train.dtype '{self.dtype}'", "use auto, bf16 or fp32")
        if not (self.lr_peak > 0 and math.isfinite(self.lr_peak)):
            raise ConfigError(f"train.lr_peak must be > 0, got {self.lr_peak}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(f"train.warmup_steps must be in [0, train.steps], got {self.warmup_steps}")
        if self.avg not in ("none", "ema"):
            raise ConfigError(f"unknown train.avg '{self.avg}'", "use none or ema")
        if not 0.01 <= self.avg_sigma_rel <= 0.25:
            raise ConfigError(f"train.avg_sigma_rel must be in [0.01, 0.25], got {self.avg_sigma_rel}",
                              "e.g. 0.05 (EDM2's range is 0.05-0.15)")
        if self.micro_batch_size < 0:
            raise ConfigError(f"train.micro_batch_size must be >= 0, got {self.micro_batch_size}")
        self._check_kept_states()
        self._check_zoom()

    def _check_kept_states(self) -> None:
        """A listed step that is not a checkpoint would keep nothing, silently: refuse it."""
        ckpts = self.ckpt_steps()
        for s in self.keep_state_steps:
            if s not in ckpts:
                near = sorted(ckpts, key=lambda c: (abs(c - s), c))[:2]
                raise ConfigError(f"train.keep_state_steps has {s}, which is not a checkpoint step "
                                  f"(nearest: {', '.join(map(str, sorted(near)))})",
                                  "keep the state at a checkpoint step, or add the step to train.extra_ckpt_steps")

    def _check_zoom(self) -> None:
        if self.zoom_ckpt_per_decade < 0:
            raise ConfigError(f"train.zoom_ckpt_per_decade must be >= 0, got {self.zoom_ckpt_per_decade}")
        if self.zoom is None:
            return
        if len(self.zoom) != 2:
            raise ConfigError(f"train.zoom must be two steps [A, B], got {self.zoom}", "e.g. --zoom 16:256")
        a, b = self.zoom
        if a >= b:
            raise ConfigError(f"train.zoom {a}:{b} is reversed or empty (A must be below B)",
                              f"write the earlier step first, e.g. --zoom {min(a, b)}:{max(a, b) + (a == b)}")
        if a < 0 or b > self.steps:
            raise ConfigError(f"train.zoom {a}:{b} is outside the run (steps 0..{self.steps})",
                              f"pick A and B in 0..{self.steps}, the run's train.steps")
        if self.zoom_per_decade() <= self.ckpt_per_decade:
            raise ConfigError(f"train.zoom_ckpt_per_decade {self.zoom_ckpt_per_decade} is not denser than the "
                              f"run's train.ckpt_per_decade {self.ckpt_per_decade}",
                              f"use more, e.g. --zoom-ckpt-per-decade {ZOOM_FACTOR * self.ckpt_per_decade}")

    def zoom_per_decade(self) -> int:
        """Checkpoints per decade inside a zoom (train.zoom_ckpt_per_decade, 0 = 4x the run's)."""
        return self.zoom_ckpt_per_decade or ZOOM_FACTOR * self.ckpt_per_decade

    def keeps_state(self, step: int) -> bool:
        """Whether checkpoint `step` keeps its optimizer state (keep_state_all or keep_state_steps)."""
        return self.keep_state_all or step in self.keep_state_steps

    def ckpt_steps(self) -> list[int]:
        steps = set(checkpoint_steps(self.steps, self.ckpt_per_decade, self.ckpt_linear_every))
        steps.update(s for s in self.extra_ckpt_steps if 0 <= s <= self.steps)
        return sorted(steps)

    def lr(self, step: int) -> float:
        return lr_at(step, schedule=self.schedule, lr_peak=self.lr_peak, total_steps=self.steps,
                     warmup_steps=self.warmup_steps, lr_min_ratio=self.lr_min_ratio,
                     decay_fraction=self.decay_fraction)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def epochs(self, train_tokens: int) -> float:
        """Passes over a training split of `train_tokens` tokens that the whole run makes."""
        return self.steps * self.tokens_per_step / max(1, train_tokens)


def init_path(init_from: str | None, init_root: str | Path | None = None) -> Path | None:
    """The checkpoint folder train.init_from names: absolute as given; relative against `init_root`
    (a study's directory) or else the working directory."""
    if not init_from:
        return None
    p = Path(init_from)
    return p if p.is_absolute() or init_root is None else Path(init_root) / p


@dataclass
class ModelConfig:
    """Model shape. `preset` picks a named size; the shape fields left None take the preset's value
    (0, the spelling of older configs, means the same); the manifest records the resolved shape."""

    preset: str = "llama-1m"
    """A name from PRESETS (`tokenclock presets` lists them with their parameter counts)."""
    hidden_size: int | None = None
    """Width of the residual stream; None = the preset's."""
    num_layers: int | None = None
    """Decoder layers; None = the preset's."""
    num_heads: int | None = None
    """Attention heads; None = the preset's."""
    num_kv_heads: int | None = None
    """Key/value heads (grouped-query attention); None = the preset's, or num_heads when
    num_heads is set to something other than the preset's."""
    intermediate_size: int | None = None
    """Width of the SwiGLU MLP; None = the preset's."""
    max_seq_len: int = 1024
    """RoPE positions the model supports (train.seq_len must not exceed it)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    tie_embeddings: bool = True
    """Share the input embedding with the output head (small models would otherwise spend most
    of their parameters on embeddings)."""
    init_std: float = 0.02
    """Standard deviation of the initial weights."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            import difflib

            close = difflib.get_close_matches(self.preset, list(PRESETS), n=1)
            raise ConfigError(f"unknown model preset '{self.preset}'",
                              f"did you mean '{close[0]}'?" if close
                              else f"choose one of {', '.join(PRESETS)}")
        h, n_layer, n_head, n_kv, inter = PRESETS[self.preset]
        # None or 0: the preset's value
        self.hidden_size = self.hidden_size or h
        self.num_layers = self.num_layers or n_layer
        self.num_heads = self.num_heads or n_head
        self.num_kv_heads = self.num_kv_heads or (n_kv if self.num_heads == n_head else self.num_heads)
        self.intermediate_size = self.intermediate_size or inter
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"model.hidden_size {self.hidden_size} is not divisible by "
                              f"model.num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model.num_heads {self.num_heads} is not a multiple of "
                              f"model.num_kv_heads {self.num_kv_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ConfigError("model head size must be even for RoPE",
                              "pick hidden_size / num_heads even")


# name: (hidden, layers, heads, kv_heads, intermediate). Non-embedding parameter counts are
# computed by `non_embedding_params` and listed in the README (`tokenclock presets`). llama-170k,
# -280k, -700k, -1.2m and -1.9m sit between the others so that 100k, 170k, 280k, 500k, 700k, 1.2m,
# 1.9m and 4m are spaced evenly in ln(params) (ratio 1.55-1.67: study-cpu's M axis); llama-3.8m,
# -14m and -27m do the same for 1m, 1.9m, 3.8m, 8m, 14m, 27m, 50m, 100m (ratio 1.86-1.99: study-gpu).
# llama-7k to llama-60k are below the capacity of a few thousand planted facts (study-synthetic).
PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "llama-7k": (16, 2, 2, 2, 48),
    "llama-15k": (24, 2, 2, 2, 72),
    "llama-27k": (32, 2, 2, 2, 96),
    "llama-60k": (48, 2, 4, 4, 144),
    "llama-100k": (64, 2, 4, 4, 192),
    "llama-170k": (64, 3, 4, 4, 224),
    "llama-250k": (80, 3, 4, 4, 224),
    "llama-280k": (88, 3, 4, 4, 232),
    "llama-500k": (96, 4, 4, 4, 256),
    "llama-700k": (112, 4, 4, 4, 384),
    "llama-1m": (128, 4, 4, 4, 480),
    "llama-1.2m": (128, 5, 4, 4, 448),
    "llama-2m": (160, 5, 5, 5, 512),
    "llama-1.9m": (160, 5, 5, 5, 576),
    "llama-4m": (192, 6, 6, 6, 640),
    "llama-3.8m": (224, 6, 4, 4, 640),
    "llama-8m": (256, 8, 8, 8, 864),
    "llama-14m": (320, 10, 5, 5, 1024),
    "llama-20m": (384, 11, 6, 6, 1024),
    "llama-27m": (448, 11, 7, 7, 1216),
    "llama-50m": (512, 14, 8, 8, 1792),
    "llama-100m": (768, 14, 12, 12, 2048),
    "llama-300m": (1024, 24, 16, 16, 2816),
    "llama-1b": (2048, 16, 32, 8, 8192),
}


def zoom_interval(text: str | None) -> list[int] | None:
    """--zoom A:B -> [A, B] (the checks of the interval are TrainConfig's)."""
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise ConfigError(f"--zoom {text!r} is not A:B", "give two steps, e.g. --zoom 16:256")
    return [int(p) for p in parts]
