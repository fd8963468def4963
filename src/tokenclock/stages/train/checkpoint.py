"""Checkpoint I/O: writes RUN/ckpt/step_XXXXXXX/ (weights, tokenizer, sidecar) atomically, the AdamW
state as safetensors (RUN/ckpt/train_state.safetensors, ckpt/step_X/optimizer.safetensors), and reads
them back; the rows of RUN/ckpt/index.parquet and train_log.parquet up to a step. torch, safetensors
and pyarrow are imported inside the functions (start-up time).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tokenclock.artifacts import atomic_path, read_parquet
from tokenclock.errors import RunDirError
from tokenclock.rundir import RunDir, ckpt_sidecar


def save_checkpoint(run: RunDir, model, hf_tok, step: int, meta: dict, state_dict=None,
                    final: Path | None = None) -> Path:
    """Write RUN/ckpt/step_XXXXXXX/ (or the folder `final`) under a temporary name, fsync, and
    rename into place (`state_dict`: the full weights of a sharded model)."""
    final = run.ckpt(step) if final is None else Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    hf_tok.save_pretrained(tmp)
    ckpt_sidecar(tmp).write_text(json.dumps(meta, indent=2) + "\n")
    for p in tmp.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # recomputed after a crash between rename and state write: same weights
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def optimizer_tensors(optimizer) -> dict:
    """AdamW moments of every parameter by position, as full CPU tensors. With FSDP the moments
    are sharded DTensors and gathering them is a collective: every rank must call this."""
    tensors = {}
    for gi, group in enumerate(optimizer.param_groups):
        for pi, p in enumerate(group["params"]):
            st = optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    t = st[key].detach()
                    t = t.full_tensor() if hasattr(t, "full_tensor") else t
                    tensors[f"g{gi}.p{pi}.{key}"] = t.cpu().contiguous()
            if "step" in st:
                tensors[f"g{gi}.p{pi}.step"] = st["step"].detach().cpu().reshape(1).float()
    return tensors


def save_state(path: Path, optimizer, step: int, extra: dict, tensors: dict | None = None) -> None:
    """AdamW moments of every parameter, as safetensors (no pickle), with the step in metadata."""
    from safetensors.torch import save_file

    tensors = optimizer_tensors(optimizer) if tensors is None else tensors
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step), "extra": json.dumps(extra)})


def state_step(path: Path) -> int:
    """The step an optimizer-state file belongs to (from its metadata; no tensors read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return int(f.metadata()["step"])


def load_state(path: Path, optimizer) -> tuple[int, dict]:
    """AdamW state saved by `save_state` into `optimizer` (each FSDP rank keeps its shard);
    returns the step and the extra metadata (cum_lr)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                name = f"g{gi}.p{pi}"
                if f"{name}.exp_avg" in f.keys():
                    st = optimizer.state[p]
                    for key in ("exp_avg", "exp_avg_sq"):
                        t = f.get_tensor(f"{name}.{key}").to(p.device)
                        if hasattr(p, "device_mesh"):  # FSDP: keep this rank's shard
                            from torch.distributed.tensor import distribute_tensor

                            t = distribute_tensor(t, p.device_mesh, p.placements)
                        st[key] = t
                    st["step"] = torch.tensor(float(f.get_tensor(f"{name}.step").item()))
    return int(meta["step"]), json.loads(meta.get("extra", "{}"))


def load_weights(model, step_dir: Path, tied: bool) -> None:
    """Weights of a checkpoint folder into `model`, refusing a checkpoint of another shape."""
    from safetensors.torch import load_file

    weights = Path(step_dir) / "model.safetensors"
    if not weights.is_file():
        raise RunDirError(f"{weights} is missing", f"delete {Path(step_dir).parent} to restart training, "
                          "or point train.init_from at a complete checkpoint folder")
    try:
        sd = load_file(str(weights))
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except (RuntimeError, OSError) as e:
        raise RunDirError(f"checkpoint {weights} does not match the configured model or is corrupt "
                          f"({str(e).splitlines()[0][:160]})", "use a new --out directory") from None
    if unexpected or any("lm_head" not in m for m in missing):
        raise RunDirError(f"checkpoint {weights} does not match the configured model",
                          "use a new --out directory")
    if tied:
        model.tie_weights()


def read_rows(path: Path, keep) -> list[dict]:
    """The rows of a parquet table (index.parquet, train_log.parquet) whose step passes `keep`, as
    dicts of Python scalars; [] when the file does not exist yet."""
    if not path.is_file():
        return []
    t = read_parquet(path)
    return [{k: t[k][i].item() for k in t} for i in range(len(t["step"])) if keep(t["step"][i])]
