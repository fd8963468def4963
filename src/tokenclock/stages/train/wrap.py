"""How the trainer's model meets the processes it runs under: FSDP2 sharding, DDP, torch.compile
(wrap_model), and the full weights and AdamW moments gathered from the shards for a checkpoint
(gather_full). torch is imported inside the functions (start-up time).
"""
from __future__ import annotations

from typing import Any

from tokenclock import dist
from tokenclock.stages.train.checkpoint import optimizer_tensors


def wrap_model(model, tc, device: str, d: dist.Dist) -> tuple[Any, Any]:
    """(the model, what the forward pass calls): FSDP2 shards each layer and then the whole model in
    place, DDP wraps it; torch.compile works in place, so save_pretrained and state dicts keep their
    names. `tc`: the train config (fsdp, compile)."""
    import torch

    if tc.fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    if tc.compile:
        if not device.startswith("cuda"):
            # CPU kernels 256 bits wide (AVX2): torch 2.13's AVX512 kernels for this model
            # corrupted the heap on an AMD EPYC with AVX512 ("malloc(): unaligned tcache chunk")
            import torch._inductor.config as inductor_config

            inductor_config.cpp.simdlen = 256
        model.compile()
    if tc.fsdp or not d.enabled:
        return model, model
    return model, torch.nn.parallel.DistributedDataParallel(model)


def gather_full(model, opt, tie_embeddings: bool) -> tuple[dict, dict]:
    """FSDP: the full weights (on the CPU) and the full AdamW moments; collectives on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full_sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if tie_embeddings:  # saved once, as the embedding (like save_pretrained)
        full_sd.pop("lm_head.weight", None)
    return full_sd, optimizer_tensors(opt)
