"""Built-in synthetic corpora whose per-token difficulty is known by construction (corpus source
`synthetic:NAME`, `tokenclock corpus --synthetic NAME`): documents generated from corpus.seed and
corpus.max_chars, reading nothing. `planted(run)` reads RUN/corpus/train.parquet,
RUN/trace/inputs.npy and RUN/tokens/tokenizer.json and returns the planted truth of every traced token.

`facts`: lines `Entity relation value`, one fact (entity, relation) -> value drawn once per seed.
Entities are Zipf-distributed (rank r has weight 1 / (r + 1)), relations uniform, so a fact's count
in the training split spans three decades; the value token after `Entity relation` is predictable
only once that fact is memorized, so its learning time should fall as the count rises. Within a
document a fact appears at most once (no copy from context; a repeat is drawn again, which thins
the head: rank 0 states 80% of its Zipf share). Entities, relations and values are
pseudo-words that the byte-level BPE keeps whole at the `synthetic` preset's vocabulary (2,560 ids:
every relation, 98% of the entities and 96% of the values, 99.7% of the value tokens of the
validation split, are one token; a smaller vocabulary splits the rarest words first). A value of
1,024 makes the memorization drop (ln 1024 = 6.9 nats) dominate the drop every value token makes
when the model learns that a value follows a relation (from ln(vocab) to ln 1024, about 1 nat).
"""
from __future__ import annotations

import difflib
import re
from collections import Counter
from pathlib import Path

import numpy as np

from tokenclock.errors import ConfigError, RunDirError
from tokenclock.stages.corpus.config import CorpusConfig
from tokenclock.stages.corpus.documents import Document

SYNTHETIC_VERSION = "synthetic-v1"  # bump when a generator's output changes
PREFIX = "synthetic:"
DEFAULT_CHARS = 2_000_000  # corpus size when corpus.max_chars is null

N_ENTITIES = 1000
N_VALUES = 1024
RELATIONS = ("color", "city", "pet", "food", "sport", "tool", "tree", "song")
ZIPF_EXPONENT = 1.0
LINES_PER_DOC = 32
_NAMES_SEED = 0x7AC75  # the vocabulary is the same for every corpus.seed; the facts are not
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_LINE = re.compile(r"(?m)^([A-Z][a-z]+) ([a-z]+) ([a-z]+)")


def _pseudo_words(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct consonant-vowel words of two syllables (few merges for the BPE to keep them whole)."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        w = "".join(_CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(len(_VOWELS))]
                    for _ in range(2))
        if w not in seen and w not in RELATIONS:
            seen.add(w)
            words.append(w)
    return words


def facts_vocabulary() -> tuple[list[str], list[str], tuple[str, ...]]:
    """(entities in Zipf rank order, values, relations): fixed words, the same for every seed."""
    words = _pseudo_words(N_ENTITIES + N_VALUES, np.random.default_rng(_NAMES_SEED))
    return [w.capitalize() for w in words[:N_ENTITIES]], words[N_ENTITIES:], RELATIONS


def fact_values(seed: int) -> np.ndarray:
    """(N_ENTITIES, len(RELATIONS)) value index of every fact, drawn from corpus.seed."""
    return np.random.default_rng([seed, 0xFAC7]).integers(0, N_VALUES, size=(N_ENTITIES, len(RELATIONS)))


def zipf_weights(n: int = N_ENTITIES, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    """Probability of entity rank r: (r + 1)^-exponent, normalized."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return w / w.sum()


def facts_documents(cfg: CorpusConfig) -> list[Document]:
    """Documents of LINES_PER_DOC fact lines until corpus.max_chars (or DEFAULT_CHARS) would be
    passed; deterministic from corpus.seed."""
    entities, values, relations = facts_vocabulary()
    table = fact_values(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 0xD0C5])
    p = zipf_weights()
    budget = cfg.max_chars if cfg.max_chars is not None else DEFAULT_CHARS
    docs: list[Document] = []
    used = 0
    while True:
        # draw twice the lines a document needs and keep the first occurrence of each fact
        e = rng.choice(N_ENTITIES, size=4 * LINES_PER_DOC, p=p)
        r = rng.integers(0, len(relations), size=4 * LINES_PER_DOC)
        lines, seen = [], set()
        for ei, ri in zip(e.tolist(), r.tolist()):
            if (ei, ri) not in seen:
                seen.add((ei, ri))
                lines.append(f"{entities[ei]} {relations[ri]} {values[table[ei, ri]]}")
                if len(lines) == LINES_PER_DOC:
                    break
        text = "\n".join(lines)
        if used + len(text) > budget and docs:
            break
        docs.append(Document(f"facts/{len(docs):06d}", "facts", text))
        used += len(text)
        if used >= budget:
            break
    return docs


GENERATORS = {"facts": facts_documents}


def synthetic_documents(spec: str, cfg: CorpusConfig) -> list[Document]:
    """The documents of corpus source `synthetic:NAME`; an unknown NAME is a ConfigError listing
    the generators that exist."""
    name = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    if name not in GENERATORS:
        close = difflib.get_close_matches(name, list(GENERATORS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown synthetic corpus '{name}'",
                          f"{hint}the synthetic corpora are: {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name](cfg)


# ----------------------------------------------------------------------------- planted truth


def train_fact_counts(texts) -> Counter:
    """(entity, relation) -> how many lines of `texts` state that fact."""
    counts: Counter = Counter()
    for text in texts:
        counts.update((m.group(1), m.group(2)) for m in _LINE.finditer(text))
    return counts


def planted(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The planted truth of every traced token of a run on `synthetic:facts`, one row per tok_idx
    (the order of trace/tokens.parquet): kind (entity, relation, value, other), fact_count (the
    fact's lines in the training split, for value tokens; -1 elsewhere), entity_rank (Zipf rank, -1
    when not a value token), repeat (the same fact stated earlier in the traced window), and
    learnable (a value token that is the whole value, whose whole line is in the window, seen in
    training, not a repeat)."""
    from tokenclock.artifacts import read_npy, read_parquet
    from tokenclock.rundir import RunDir
    from tokenclock.stages.tokens.tokenizer import eos_id, load_tokenizer

    run = RunDir(run_dir)
    for path, fix in ((run.corpus_split("train"), "tokenclock corpus"), (run.trace_inputs, "tokenclock trace")):
        if not path.is_file():
            raise RunDirError(f"{path} does not exist", f"run `{fix}` on {run.root} first")
    counts = train_fact_counts(read_parquet(run.corpus_split("train"), columns=["text"])["text"].tolist())
    entities = {e: i for i, e in enumerate(facts_vocabulary()[0])}
    tok = load_tokenizer(run.tokenizer)
    id_text = [tok.decode([i], skip_special_tokens=False) for i in range(tok.get_vocab_size())]
    id_text[eos_id(tok)] = "\n"  # a document boundary ends a line, one character wide
    inputs = read_npy(run.trace_inputs)  # (n_seqs, seq_len + 1); target j+1 is predicted from 0..j
    n_seqs, seq_len = inputs.shape[0], inputs.shape[1] - 1
    cols = {"kind": np.full((n_seqs, seq_len + 1), "other", dtype=object),
            "fact_count": np.full((n_seqs, seq_len + 1), -1, dtype=np.int64),
            "entity_rank": np.full((n_seqs, seq_len + 1), -1, dtype=np.int64),
            "repeat": np.zeros((n_seqs, seq_len + 1), dtype=bool),
            "learnable": np.zeros((n_seqs, seq_len + 1), dtype=bool)}
    for s in range(n_seqs):
        _mark_window(s, [id_text[i] for i in inputs[s].tolist()], counts, entities, cols)
    out = {"tok_idx": np.arange(n_seqs * seq_len, dtype=np.int64)}
    out.update({k: v[:, 1:].reshape(-1) for k, v in cols.items()})  # targets only
    return out


def _mark_window(s: int, pieces: list[str], counts: Counter, entities: dict[str, int], cols: dict) -> None:
    """Fill row s of `cols` from the token texts of one traced window."""
    starts = np.concatenate([[0], np.cumsum([len(p) for p in pieces])[:-1]]).astype(np.int64)
    ends = starts + np.array([len(p) for p in pieces], dtype=np.int64)
    text = "".join(pieces)
    seen: set[tuple[str, str]] = set()
    for m in _LINE.finditer(text):
        entity, relation = m.group(1), m.group(2)
        if entity not in entities or relation not in RELATIONS:
            continue
        j = int(np.searchsorted(starts, m.start(3) - 1))  # the value's first token starts at its space
        if j >= len(pieces) or starts[j] != m.start(3) - 1:
            continue
        e0, e1 = np.searchsorted(starts, m.start(1)), np.searchsorted(ends, m.end(1))
        cols["kind"][s, e0:e1 + 1] = "entity"
        cols["kind"][s, np.searchsorted(starts, m.start(2) - 1)] = "relation"
        cols["kind"][s, j] = "value"
        cols["fact_count"][s, j] = counts.get((entity, relation), 0)
        cols["entity_rank"][s, j] = entities[entity]
        cols["repeat"][s, j] = (entity, relation) in seen
        whole = ends[j] == m.end(3)  # the value is one token (the rarest values may be split)
        cols["learnable"][s, j] = whole and not cols["repeat"][s, j] and cols["fact_count"][s, j] > 0
        seen.add((entity, relation))
