"""Checkpoints of a series that hold the same weights, found before any forward pass, and loss rows
that came out identical, found after. Reads weight-file identities only: in the huggingface_hub
cache the blob a snapshot's file links to (an LFS file's blob is named by its sha256), on the hub
the LFS sha256 of each file (`list_repo_tree`), for local folders a sha256 of each weight file
(cached by size and mtime in RUN/trace/weight_sha256.json). Writes nothing but that cache.

Public suites serve copies under step labels (pythia-2.8b: 86 of 154 branches hold one of two
blobs; pythia-12b step50000 and step58000 hold the final model's first shard), and a copy traced
as an early step fakes a learning curve. Two checkpoints that share any weight file are one group.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import numpy as np

from tokenclock.artifacts import file_sha256, read_json, write_json
from tokenclock.errors import DataError
from tokenclock.stages.trace.checkpoints import Checkpoint

REFERENCE = "main"  # the hub's default branch: normally the final model
_WEIGHT_NAME = re.compile(r"^(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def weight_names(names) -> list[str]:
    """The weight files among a revision's file names: safetensors when any, else .bin (the files
    transformers loads), sorted."""
    w = [n for n in names if _WEIGHT_NAME.match(Path(n).name) and "/" not in n]
    st = [n for n in w if n.endswith(".safetensors")]
    return sorted(st or w)


# ----------------------------------------------------------------------------- where the ids come from


def cache_ids(repo: str, revision: str, cache_dir: str | Path | None = None) -> dict[str, str] | None:
    """{weight file: blob name} of a hub revision in the huggingface_hub cache (refs/REV -> commit ->
    snapshots/COMMIT/FILE -> ../../blobs/SHA256), or None when the revision is not cached."""
    from huggingface_hub import constants

    root = Path(cache_dir or constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    ref = root / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else (revision if _COMMIT.match(revision) else None)
    snap = root / "snapshots" / commit if commit else None
    if snap is None or not snap.is_dir():
        return None
    names = weight_names(p.name for p in snap.iterdir())
    if not names:
        return None
    return {n: Path(os.readlink(snap / n)).name if (snap / n).is_symlink() else file_sha256(snap / n)
            for n in names}


class HubUnreachable(Exception):
    """The hub did not answer (offline, no network): ask it nothing more this trace."""


def hub_ids(repo: str, revision: str) -> dict[str, str] | None:
    """{weight file: LFS sha256} from the hub's file metadata (one `list_repo_tree` call), or None
    when the hub says the repository or revision is missing or private; HubUnreachable when it
    does not answer."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        files = {f.path: f for f in HfApi().list_repo_tree(repo, revision=revision) if hasattr(f, "lfs")}
    except HfHubHTTPError:  # an answer: 401/403/404
        return None
    except Exception as e:  # offline mode, connection errors, timeouts
        raise HubUnreachable(str(e)) from None
    names = weight_names(files)
    if not names:
        return None
    return {n: (files[n].lfs.sha256 if files[n].lfs else files[n].blob_id) for n in names}


def local_ids(folder: str | Path, cache: dict) -> dict[str, str] | None:
    """{weight file: sha256} of a local checkpoint folder; `cache` maps path -> [size, mtime_ns, sha]
    and is updated (a file hashes once until it changes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    out = {}
    for n in weight_names(p.name for p in folder.iterdir()):
        p = (folder / n).resolve()
        st = p.stat()
        hit = cache.get(str(p))
        if not hit or hit[:2] != [st.st_size, st.st_mtime_ns]:
            hit = cache[str(p)] = [st.st_size, st.st_mtime_ns, file_sha256(p)]
        out[n] = hit[2]
    return out or None



def checkpoint_ids(ck: Checkpoint, cache: dict, online: dict) -> tuple[dict[str, str] | None, str]:
    """(weight ids, where they came from: 'local', 'hub cache', 'hub' or 'unknown'). `online`
    {"hub": bool} turns False at the first unanswered request (one timeout, not one per revision)."""
    if ck.revision is None:
        return local_ids(ck.source, cache), "local"
    ids = cache_ids(ck.source, ck.revision)
    if ids is not None:
        return ids, "hub cache"
    if online["hub"]:
        try:
            ids = hub_ids(ck.source, ck.revision)
        except HubUnreachable:
            online["hub"] = False
    return ids, ("hub" if ids is not None else "unknown")


# ----------------------------------------------------------------------------- groups


def groups(ids: list[dict[str, str] | None]) -> list[list[int]]:
    """Indices of checkpoints that share any weight file (by content), as groups of two or more,
    each sorted, in order of their first member."""
    parent = list(range(len(ids)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, d in enumerate(ids):
        for sha in (d or {}).values():
            if sha in owner:
                parent[find(i)] = find(owner[sha])
            else:
                owner[sha] = i
    out: dict[int, list[int]] = {}
    for i in range(len(ids)):
        out.setdefault(find(i), []).append(i)
    return sorted((g for g in out.values() if len(g) > 1), key=lambda g: g[0])


def _describe(members: list[str], ids: list[dict]) -> str:
    shared = set.intersection(*(set(d.values()) for d in ids))
    same = all(d == ids[0] for d in ids)
    what = "identical weights" if same else f"{len(shared) or 'a'} shared weight file(s)"
    sha = sorted(shared)[0][:12] if shared else ""
    return f"{', '.join(members)} ({what}{', ' + sha + '…' if sha else ''})"


def screen(cks: list[Checkpoint], *, skip_bad: bool, skipped: list[dict], hash_cache: str | Path | None = None,
           online: bool = True) -> tuple[list[Checkpoint], dict]:
    """The checkpoints (in axis order) without copies of one another, and a record for the
    manifest: {"checked": n, "unchecked": [labels], "groups": [[labels]], "source": {label: where}}.

    A group is two or more checkpoints that share a weight file, or one that shares a weight file
    with the hub's `main` branch while being neither `main` nor the series' last checkpoint (main
    is the final model: an early branch serving it is a copy). Without skip_bad a group is refused
    naming every group; with it, the latest member of each group is kept (main counts as later than
    every checkpoint but the last) and the others are dropped, each with its reason in `skipped`.
    Which step the bytes belong to cannot be read from them: keeping the latest keeps the one whose
    label is least likely to be early, and never traces a copy at two steps."""
    cache = read_json(hash_cache) if hash_cache and Path(hash_cache).is_file() else {}
    online = {"hub": online}
    found = [checkpoint_ids(ck, cache, online) for ck in cks]
    ids = [f[0] for f in found]
    labels = [ck.label for ck in cks]
    hub = {ck.source for ck in cks if ck.revision is not None}
    ref = None
    if len(hub) == 1 and REFERENCE not in labels:
        repo = next(iter(hub))
        ref = checkpoint_ids(Checkpoint(REFERENCE, repo, REFERENCE), cache, online)[0]
    if hash_cache and cache:
        write_json(hash_cache, cache)
    all_ids = ids + ([ref] if ref else [])
    names = labels + ([REFERENCE] if ref else [])
    last = len(cks) - 1
    bad = []
    for g in groups(all_ids):
        traced = [i for i in g if i < len(cks)]
        if len(g) == 2 and len(traced) == 1 and traced[0] == last:
            continue  # the final checkpoint is main: expected
        bad.append(g)
    record = {"checked": sum(d is not None for d in ids),
              "unchecked": [lab for lab, d in zip(labels, ids) if d is None],
              "source": {lab: f[1] for lab, f in zip(labels, found)},
              "groups": [[names[i] for i in g] for g in bad]}
    if not bad:
        return cks, record
    text = "; ".join(_describe([names[i] for i in g], [all_ids[i] for i in g]) for g in bad)
    if not skip_bad:
        raise DataError(f"checkpoints that serve the same weights: {text}",
                        "pass --skip-bad to keep the latest of each group and record the others as dropped, "
                        "or leave the copies out of --revisions")
    drop: dict[int, str] = {}
    for g in bad:
        traced = [i for i in g if i < len(cks)]
        keep = last if last in traced else (None if len(g) > len(traced) else traced[-1])
        kept_name = names[keep] if keep is not None else REFERENCE
        for i in traced:
            if i != keep:
                drop[i] = (f"same weights as {kept_name} ({', '.join(names[j] for j in g)} share weight files); "
                           f"kept {'the latest, ' + kept_name if keep is not None else 'none: they are main'}")
    for i, why in sorted(drop.items()):
        print(f"tokenclock: warning: dropping {labels[i]}: {why}", file=sys.stderr)
        skipped.append({"checkpoint": labels[i], "reason": why})
    record["dropped"] = [labels[i] for i in sorted(drop)]
    return [ck for i, ck in enumerate(cks) if i not in drop], record


def identical_rows(loss: np.ndarray, labels: list[str]) -> list[list[str]]:
    """Groups of checkpoints whose traced loss rows are bit-identical: the second net, for copies
    that the file identities did not show (re-saved weights, unchecked sources)."""
    seen: dict[str, list[str]] = {}
    for k in range(loss.shape[0]):
        digest = hashlib.sha256(np.ascontiguousarray(loss[k]).tobytes()).hexdigest()
        seen.setdefault(digest, []).append(labels[k])
    return [g for g in seen.values() if len(g) > 1]


def note_rows(loss: np.ndarray, labels: list[str]) -> list[list[str]]:
    """identical_rows, each group printed as a warning."""
    out = identical_rows(loss, labels)
    for g in out:
        print(f"tokenclock: warning: checkpoints {', '.join(g)} give identical loss rows (the same weights "
              "under several labels?); see identical_rows in the trace's meta.json", file=sys.stderr)
    return out
