"""Tracing checkpoint series tokenclock did not train: local folders of tiny GPT-NeoX / Llama
checkpoints (as a hub series would be laid out), checked against a direct transformers forward
pass; revision-name parsing, the Pythia preset, integrity errors, --skip-bad, the M axis. Offline."""
from __future__ import annotations

import json
import os
import shutil
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.errors import DataError, InputError, RunDirError, TokenizerError
from tokenclock.rundir import RunDir
from tokenclock.stages.trace.checkpoints import check_safetensors
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.trace.revisions import (
    PYTHIA_STEPS,
    parse_revision,
    preset_revisions,
    read_step_map,
    resolve_revisions,
)
from tokenclock.stages.trace.series import trace_models, trace_revisions

STEPS = [0, 1, 2, 4, 8, 16]
CFG = dict(n_seqs=6, seq_len=24, batch_size=4, seed=0)
WORDS = ("the a cat dog sat ran on under mat tree big small red blue quickly slowly and then "
         "it was is saw heard bird sang over river bank old man woman child played").split()


def _text(seed: int, n_words: int = 5000) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(0, n_words, 9):
        out.append(" ".join(rng.choice(WORDS, size=9)).capitalize() + ".")
    return " ".join(out)


def _tokenizer(seed: int):
    from tokenclock.stages.tokens.tokenizer import hf_tokenizer, train_bpe

    return hf_tokenizer(train_bpe([_text(seed)], vocab_size=300))


def _forward_losses(folder, inputs: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    x = torch.from_numpy(inputs.astype(np.int64))
    with torch.no_grad():
        logits = model(input_ids=x[:, :-1]).logits
    return F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").reshape(-1).numpy()


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """root/step{0,1,2,4,8,16}: a tiny GPT-NeoX trained a few Adam steps, saved like a hub series."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    base = tmp_path_factory.mktemp("series")
    tok = _tokenizer(0)
    text = base / "val.txt"
    text.write_text(_text(1))
    ids = torch.tensor(tok(_text(2))["input_ids"][:4000])
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, eos_token_id=0, bos_token_id=0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    root = base / "pythia-tiny"
    for step in range(STEPS[-1] + 1):
        if step in STEPS:
            model.save_pretrained(root / f"step{step}")
            tok.save_pretrained(root / f"step{step}")
        starts = torch.randint(0, len(ids) - 33, (8,))
        batch = torch.stack([ids[s:s + 33] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"root": root, "text": text, "base": base}


@pytest.fixture(scope="module")
def traced(series, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    meta = trace_revisions(out, str(series["root"]), "all", str(series["text"]), TraceConfig(**CFG),
                           tokens_per_step=4, progress=False)
    return RunDir(out), meta


# ----------------------------------------------------------------------------- names and presets


def test_pythia_preset():
    revs = preset_revisions("pythia")
    assert len(revs) == 154 == len(PYTHIA_STEPS)
    assert revs[0] == "step0" and revs[-1] == "step143000" and revs[10] == "step512" and revs[11] == "step1000"
    steps = [parse_revision(r)["step"] for r in revs]
    assert (np.diff(steps) > 0).all()
    assert resolve_revisions("EleutherAI/pythia-70m", "pythia") == revs


def test_parse_revision_names():
    assert parse_revision("step1000-tokens4B") == {"step": 1000, "tokens_seen": 4_000_000_000}
    assert parse_revision("stage1-step5000-tokens21M") == {"step": 5000, "tokens_seen": 21_000_000}
    assert parse_revision("step0")["step"] == 0
    assert parse_revision("checkpoint-500")["step"] == 500
    assert parse_revision("step_0000128")["step"] == 128
    assert parse_revision("global_step100")["step"] == 100
    assert parse_revision("runs/x/ckpt-77", r"ckpt-(\d+)")["step"] == 77
    assert parse_revision("iter_0042", r"iter_(?P<step>\d+)")["step"] == 42
    with pytest.raises(InputError, match="cannot read a step"):
        parse_revision("main")


def test_step_map_files(tmp_path):
    (tmp_path / "m.csv").write_text("revision,step,tokens_seen\nfirst,0,0\nlater,100,6400\n")
    (tmp_path / "m.json").write_text(json.dumps({"a": 3, "b": {"step": 9, "tokens_seen": 90}}))
    assert read_step_map(tmp_path / "m.csv") == {"first": {"step": 0, "tokens_seen": 0},
                                                 "later": {"step": 100, "tokens_seen": 6400}}
    assert read_step_map(tmp_path / "m.json")["b"] == {"step": 9, "tokens_seen": 90}
    (tmp_path / "bad.csv").write_text("rev,when\nx,1\n")
    with pytest.raises(InputError, match="malformed"):
        read_step_map(tmp_path / "bad.csv")


def test_corrupt_safetensors_detected(series, tmp_path):
    src = series["root"] / "step4" / "model.safetensors"
    assert check_safetensors(src) is None
    dst = tmp_path / "model.safetensors"
    dst.write_bytes(src.read_bytes()[:-100])
    assert "truncated" in check_safetensors(dst)


# ----------------------------------------------------------------------------- T axis


def test_trace_matches_forward_pass(series, traced):
    run, meta = traced
    loss = read_npy(run.trace_loss)
    inputs = read_npy(run.trace_inputs)
    assert loss.dtype == np.float32 and loss.shape == (len(STEPS), CFG["n_seqs"] * CFG["seq_len"])
    assert inputs.shape == (CFG["n_seqs"], CFG["seq_len"] + 1)
    for k, s in enumerate(STEPS):
        np.testing.assert_allclose(loss[k], _forward_losses(series["root"] / f"step{s}", inputs),
                                   rtol=1e-4, atol=1e-5)
    assert loss[-1].mean() < loss[0].mean() - 0.5  # the series learns
    axis = read_parquet(run.trace_axis)
    assert list(axis["step"]) == STEPS and list(axis["tokens_seen"]) == [4 * s for s in STEPS]
    assert "cum_lr" not in axis
    tokens = read_parquet(run.trace_tokens)
    assert len(tokens["tok_idx"]) == loss.shape[1] and (tokens["train_count"] == -1).all()
    assert np.isnan(tokens["unigram_loss"]).all()
    np.testing.assert_array_equal(tokens["token_id"], inputs[:, 1:].reshape(-1))
    disk = read_json(run.trace_meta)
    assert disk["source"] == "hf" and disk["train_counts"] is False and disk["skipped"] == []
    assert disk["checkpoints"] == [f"step{s}" for s in STEPS] and meta["n_ckpt"] == len(STEPS)
    assert read_json(run.manifest)["stages"]["trace"]["status"] == "done"


def test_fit_and_spectrum_run_on_output(traced):
    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.stage import fit
    from tokenclock.stages.spectrum.stage import spectrum

    run, _ = traced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = fit(run.root, FitConfig(), progress=False)
        spec = spectrum(run.root, progress=False)
    assert summary["n_tok"] == CFG["n_seqs"] * CFG["seq_len"]
    assert "reconstruction_r2" in spec and run.fit_events.is_file()


def test_resume_per_revision(series, tmp_path, monkeypatch):
    import tokenclock.stages.trace.series as S

    real, loads = S.model_loader, []

    def counting(ck, dtype, emb):
        inner = real(ck, dtype, emb)

        def load():
            loads.append(ck.label)
            if len(loads) == 3 and not resumed:
                raise KeyboardInterrupt
            return inner()
        return load

    monkeypatch.setattr(S, "model_loader", counting)
    resumed = False
    with pytest.raises(KeyboardInterrupt):
        trace_revisions(tmp_path / "r", str(series["root"]), None, str(series["text"]), TraceConfig(**CFG),
                        progress=False)
    assert read_json(RunDir(tmp_path / "r").manifest)["stages"]["trace"]["status"] == "failed"
    resumed, loads[:] = True, []
    trace_revisions(tmp_path / "r", str(series["root"]), None, str(series["text"]), TraceConfig(**CFG),
                    progress=False)
    assert loads == [f"step{s}" for s in STEPS[2:]]  # rows 0 and 1 were kept
    assert "tokens_seen" not in read_parquet(RunDir(tmp_path / "r").trace_axis)  # unknown: absent


def test_corrupt_and_missing_revisions(series, tmp_path, capsys):
    from tokenclock.cli import main

    root = tmp_path / "bad"
    shutil.copytree(series["root"], root)
    st = root / "step2" / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    (root / "step8" / "config.json").unlink()
    with pytest.raises(RunDirError, match=r"step2: model.safetensors .*truncated"):
        trace_revisions(tmp_path / "r1", str(root), "all", str(series["text"]), TraceConfig(**CFG), progress=False)
    shutil.copytree(series["root"] / "step2", root / "step2", dirs_exist_ok=True)
    with pytest.raises(RunDirError, match="step8: .* has no config.json"):
        trace_revisions(tmp_path / "r1", str(root), "all", str(series["text"]), TraceConfig(**CFG), progress=False)
    st.write_bytes(st.read_bytes()[:-10])
    args = ["trace", "--model", str(root), "--revisions", "step0,step1,step2,step4,step8,step16",
            "--text", str(series["text"]), "--out", str(tmp_path / "r2"), "--n-seqs", "4", "--seq-len", "16",
            "--quiet"]
    assert main(args) == RunDirError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step2" in err[0] and "--skip-bad" in err[0]
    assert main(args + ["--skip-bad"]) == 0
    run = RunDir(tmp_path / "r2")
    meta = read_json(run.trace_meta)
    assert [s["checkpoint"] for s in meta["skipped"]] == ["step2", "step8"]
    assert list(read_parquet(run.trace_axis)["step"]) == [0, 1, 4, 16]
    assert read_npy(run.trace_loss).shape == (4, 64)
    assert [s["checkpoint"] for s in read_json(run.manifest)["stages"]["trace"]["skipped"]] == ["step2", "step8"]


def test_tokenizer_mismatch_refused(series, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(series["root"], root)
    _tokenizer(5).save_pretrained(root / "step4")  # same vocab size, other merges
    with pytest.raises(TokenizerError, match="step4 has a different tokenizer"):
        trace_revisions(tmp_path / "r", str(root), "all", str(series["text"]), TraceConfig(**CFG),
                        skip_bad=True, progress=False)


def test_duplicate_steps_refused(series, tmp_path):
    with pytest.raises(DataError, match="step 4"):
        trace_revisions(tmp_path / "r", str(series["root"]), "step0,step1,step4,step_0004",
                        str(series["text"]), TraceConfig(**CFG), progress=False)


# ----------------------------------------------------------------------------- M axis


def test_model_axis_sorted_by_n_params(series, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tokenclock.stages.train.model import non_embedding_params

    tok = _tokenizer(0)
    sizes = {"m32": 32, "m8": 8, "m24": 24, "m16": 16}  # given out of order
    n_params = {}
    for name, h in sizes.items():
        torch.manual_seed(h)
        m = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=h, intermediate_size=2 * h,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=64))
        n_params[name] = non_embedding_params(m)
        m.save_pretrained(tmp_path / name / "final")
        tok.save_pretrained(tmp_path / name / "final")
    out = tmp_path / "m"
    trace_models(out, [str(tmp_path / n) for n in sizes], "final", str(series["text"]), TraceConfig(**CFG),
                 progress=False)
    run = RunDir(out)
    axis = read_parquet(run.trace_axis)
    order = sorted(sizes, key=n_params.get)
    assert list(axis["n_params"]) == [n_params[n] for n in order] and list(axis) == ["n_params"]
    loss, inputs = read_npy(run.trace_loss), read_npy(run.trace_inputs)
    for k, name in enumerate(order):
        np.testing.assert_allclose(loss[k], _forward_losses(tmp_path / name / "final", inputs), rtol=1e-4, atol=1e-5)
    _tokenizer(7).save_pretrained(tmp_path / "m16" / "final")
    with pytest.raises(TokenizerError, match="different tokenizer"):
        trace_models(tmp_path / "m2", [str(tmp_path / n) for n in sizes], "final", str(series["text"]),
                     TraceConfig(**CFG), progress=False)


# ----------------------------------------------------------------------------- hub names, CLI


def test_hub_revision_path_offline():
    from tokenclock.stages.trace.checkpoints import inspect_checkpoint, locate

    ck = locate("EleutherAI/pythia-70m", "step1000")
    assert (ck.source, ck.revision) == ("EleutherAI/pythia-70m", "step1000")  # from_pretrained(revision=)
    with pytest.raises(RunDirError, match=r"step1000 \(EleutherAI/pythia-70m@step1000\)"):
        inspect_checkpoint(ck)  # offline and not cached: one clear error naming the revision


def test_cli_trace_needs_a_source(capsys):
    from tokenclock.cli import main

    assert main(["trace"]) == 3
    assert "--model" in capsys.readouterr().err
    assert main(["trace", "--models", "a,b", "--revisions", "pythia", "--out", "x"]) == 3
