"""Every command in the README and the docs runs, as far as it can be checked without running it:
each `tokenclock ...` line of a fenced shell block parses against the real argparse parser (and its
`--set` keys against the real config), each script it names exists with the flags given, each fenced
Python block compiles, imports what it imports and names only what tokenclock has (calls bound to the
real signatures), and each study YAML block loads. Also: the generated config reference leaves no
key undocumented, README links resolve, and no user doc cites an issue number. Nothing trains.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import re
import shlex
import types
from pathlib import Path

import pytest
import yaml

from tokenclock.testing import load_script

ROOT = Path(__file__).resolve().parents[1]
# The user docs; results/ records are left out: they quote the commands of their day verbatim.
DOC_FILES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SHELL = {"bash", "sh", "shell", "console"}


def _blocks(langs: set[str]) -> list[tuple[str, str, str]]:
    """[(file:line, language, body)] of the fenced blocks in the given languages, over every doc file."""
    out = []
    for path in DOC_FILES:
        text = path.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) in langs:
                line = text.count("\n", 0, m.start()) + 1
                out.append((f"{path.relative_to(ROOT)}:{line}", m.group(1), m.group(2)))
    return out


def _commands(body: str, console: bool = False) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, `a && b` split;
    in a console block only the lines after a `$ ` prompt (the rest is output)."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        line = line.strip()
        if console and not line.startswith("$ "):
            continue
        line = line.removeprefix("$ ")
        words = shlex.split(line, comments=True) if line else []
        cmd: list[str] = []
        for w in words + ["&&"]:
            if w in ("&&", ";", "||"):
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


def _tokenclock_argv(cmd: list[str]) -> list[str] | None:
    """The arguments after `tokenclock` (also `python -m tokenclock`, `torchrun ... -m tokenclock`)."""
    if cmd[0] == "tokenclock":
        return cmd[1:]
    for i in range(len(cmd) - 1):
        if cmd[i] == "-m" and cmd[i + 1] == "tokenclock":
            return cmd[i + 2:]
    return None


SHELL_BLOCKS = _blocks(SHELL)
SHELL_CMDS = [(where, cmd) for where, lang, body in SHELL_BLOCKS for cmd in _commands(body, lang == "console")]
TOKENCLOCK_CMDS = [(where, argv) for where, cmd in SHELL_CMDS if (argv := _tokenclock_argv(cmd)) is not None]
SCRIPT_CMDS = [(where, cmd) for where, cmd in SHELL_CMDS
               if len(cmd) > 1 and cmd[0] in ("python", "bash") and cmd[1].endswith((".py", ".sh"))]


def test_the_docs_have_commands_to_check():
    assert len(TOKENCLOCK_CMDS) >= 40 and len(SCRIPT_CMDS) >= 10


def _resolvable_config(name: str | None) -> str | None:
    from tokenclock.config import resolve_config_path
    from tokenclock.errors import ConfigError
    if name is None:
        return None
    try:
        resolve_config_path(name)
        return name
    except ConfigError:
        return None  # a user's own file, named as an example


@pytest.mark.parametrize("where,argv", TOKENCLOCK_CMDS, ids=[f"{w}:{' '.join(a)[:60]}" for w, a in TOKENCLOCK_CMDS])
def test_tokenclock_command_parses(where, argv):
    from tokenclock.cli import build_parser
    from tokenclock.config import load_config
    from tokenclock.study.config import load_study

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `tokenclock {' '.join(argv)}` does not parse: {err.getvalue().strip()}")
    pairs = getattr(args, "set", None) or []
    if args.command == "study":
        load_study(_resolvable_config(args.config) or "study-tiny", pairs)  # unknown keys raise
    elif pairs:
        load_config(_resolvable_config(getattr(args, "config", None)), pairs)


@pytest.mark.parametrize("where,cmd", SCRIPT_CMDS, ids=[f"{w}:{' '.join(c)[:60]}" for w, c in SCRIPT_CMDS])
def test_script_exists_with_its_flags(where, cmd):
    script = ROOT / cmd[1]
    assert script.is_file(), f"{where}: {cmd[1]} does not exist"
    source = script.read_text()
    for flag in (w.split("=")[0] for w in cmd[2:] if w.startswith("--")):
        assert f'"{flag}"' in source or f"'{flag}'" in source or f"{flag})" in source, \
            f"{where}: {cmd[1]} has no flag {flag}"


PYTHON_BLOCKS = [(where, body) for where, _, body in _blocks({"python"})]
YAML_BLOCKS = [(where, body) for where, _, body in _blocks({"yaml"})]


def _resolve(node: ast.AST, names: dict[str, object]):
    """The object a Name / Attribute chain of tokenclock names resolves to (None: not tokenclock's)."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, names)
        if base is None:
            return None
        if isinstance(base, types.ModuleType) and not hasattr(base, node.attr):
            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(f"{base.__name__}.{node.attr}")  # a submodule not imported yet
        if not hasattr(base, node.attr):
            raise AssertionError(f"{ast.unparse(node)}: {getattr(base, '__name__', base)} has no {node.attr}")
        value = getattr(base, node.attr)
        return value if isinstance(value, (types.ModuleType, type)) or callable(value) else None
    return None


@pytest.mark.parametrize("where,body", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_python_snippet_names_real_functions(where, body):
    tree = ast.parse(body.replace("\n    ...", "\n    pass"), filename=where)
    if re.search(r"\btc\.(Tracker|track)\b|tokenclock\.track\b", body) and \
            importlib.util.find_spec("tokenclock.track") is None:
        pytest.skip("tokenclock.track is not in this tree yet")
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "tokenclock":
                    module = importlib.import_module(a.name)
                    names[a.asname or a.name.split(".")[0]] = module if a.asname else importlib.import_module("tokenclock")
                else:
                    assert importlib.util.find_spec(a.name.split(".")[0]), f"{where}: no module {a.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] != "tokenclock":
                assert importlib.util.find_spec(node.module.split(".")[0]), f"{where}: no module {node.module}"
                continue
            module = importlib.import_module(node.module)
            for a in node.names:
                assert hasattr(module, a.name), f"{where}: from {node.module} import {a.name}: no such name"
                names[a.asname or a.name] = getattr(module, a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            _resolve(node, names)
        if isinstance(node, ast.Call):
            func = _resolve(node.func, names)
            if func is None or isinstance(func, types.ModuleType) or \
                    any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                continue
            try:
                sig = inspect.signature(func)
            except (TypeError, ValueError):
                continue
            try:
                sig.bind(*node.args, **{k.arg: k.value for k in node.keywords})
            except TypeError as e:
                pytest.fail(f"{where}: {ast.unparse(node)[:80]}: {e}")


@pytest.mark.parametrize("where,body", YAML_BLOCKS, ids=[w for w, _ in YAML_BLOCKS])
def test_yaml_config_block_loads(where, body, tmp_path):
    from tokenclock.config import load_config
    from tokenclock.study.config import load_study
    path = tmp_path / "config.yaml"
    path.write_text(body)
    if "study" in (yaml.safe_load(body) or {}):
        load_study(path)
    else:
        load_config(path)


def _docs_hooks():
    return load_script(ROOT / "scripts" / "docs_hooks.py")


def test_every_config_key_has_a_docstring_and_a_row():
    hooks = _docs_hooks()
    assert hooks.undocumented_fields() == [], "config fields without a docstring (the config reference " \
        "is generated from them): write one under each field"
    page = hooks.config_reference()
    for key in ("`train.steps`", "`fit.width_floor`", "`trace.n_seqs`", "`study.seed_kind`", "`seed`"):
        assert f"| {key} |" in page


def test_cli_reference_lists_every_command():
    from tokenclock.cli import build_parser
    page = _docs_hooks().cli_reference()
    for name in _docs_hooks().subcommands(build_parser()):
        assert f"## tokenclock {name}\n" in page
    assert "| `--zoom A:B` |" in page


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_user_docs_cite_no_issue_numbers():
    for path in [*DOC_FILES, *sorted((ROOT / "results").glob("*.md"))]:
        for m in re.finditer(r"(?<![\w&/])#\d+\b|\bissues? #?\d+", path.read_text(), flags=re.I):
            pytest.fail(f"{path.relative_to(ROOT)}: '{m.group(0)}': user docs name no issue numbers")
