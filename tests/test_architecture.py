"""The shape of the package: imports point one way (no cycle among tokenclock's modules, counting
imports inside functions too), and every module says in its opening lines what it is for."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "tokenclock"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the tokenclock modules it imports (top-level and function-level)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                # a package's __init__ is not an edge of its own submodules' cycle check
                if t and t != mod and not (t == "tokenclock" and mod.startswith("tokenclock.")):
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    graph = import_graph()
    assert "tokenclock.stages.train.stage" in graph
    assert "tokenclock.windows" in graph["tokenclock.stages.train.stage"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_stage_packages_do_not_import_the_frame_above_them():
    """Stages never import the CLI, the pipeline, the config loader or a study."""
    above = ("tokenclock.cli", "tokenclock.pipeline", "tokenclock.config", "tokenclock.study")
    for mod, deps in import_graph().items():
        if mod.startswith("tokenclock.stages."):
            bad = sorted(d for d in deps if d.startswith(above))
            assert not bad, f"{mod} imports {bad}"


def test_every_module_opens_with_what_it_does():
    for path in PKG.rglob("*.py"):
        if path.name == "__main__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc.split()) >= 6, f"{path.relative_to(PKG)} has no opening docstring"


# ----------------------------------------------------------------------------- one home for each idea

MAX_LINES = 400


def _plain_strings(tree: ast.AST):
    """Every string constant that is not a docstring (of a module, class, function or attribute)."""
    docs = set()
    for n in ast.walk(tree):
        body = getattr(n, "body", None)
        if not isinstance(body, list):
            continue
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            docs.add(id(body[0].value))
        for a, b in zip(body, body[1:]):
            if isinstance(a, (ast.Assign, ast.AnnAssign)) and isinstance(b, ast.Expr) \
                    and isinstance(b.value, ast.Constant):
                docs.add(id(b.value))
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            yield n


def _run_artifact_names() -> set[str]:
    """Every path RunDir and StudyDir name, relative to their root, in both weight series."""
    import inspect

    from tokenclock.rundir import WEIGHT_SERIES, RunDir, StudyDir

    names = set()
    root = Path("/R")
    for w in WEIGHT_SERIES:
        for obj in (RunDir(root, w), StudyDir(root)):
            for name, attr in inspect.getmembers(type(obj)):
                if isinstance(attr, property):
                    v = getattr(obj, name)
                    if isinstance(v, Path) and v.is_relative_to(root) and v.suffix:
                        names.add(v.relative_to(root).as_posix())
    return names


def test_the_weight_series_and_artifact_names_live_in_rundir():
    """No module but rundir spells a weight series ("raw", "avg", a *_avg folder or key) or a run
    directory's artifact path ("trace/loss.npy", "study.json"): they derive them from rundir, so an
    averaged-weight page names trace_avg/ where it read it."""
    import re

    series = re.compile(r"^(raw|avg|_avg)$|\b(ckpt|trace|fit|spectrum|report|axes|finals|summary)_avg\b")
    artifacts = _run_artifact_names()
    assert {"trace/loss.npy", "trace_avg/loss.npy", "study.json", "manifest.json"} <= artifacts
    inside = re.compile(r"(?<![\w/])(" + "|".join(re.escape(a) for a in sorted(artifacts, key=len, reverse=True)
                                                  if "/" in a) + r")(?!\w)")
    bad = []
    for path in PKG.rglob("*.py"):
        if path.name == "rundir.py":
            continue
        for n in _plain_strings(ast.parse(path.read_text())):
            if series.search(n.value) or n.value in artifacts or inside.search(n.value):
                bad.append(f"{path.relative_to(PKG)}:{n.lineno}: {n.value!r}")
    assert not bad, "spelled outside rundir: " + "; ".join(bad)


def test_no_private_name_is_imported_across_modules():
    bad = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tokenclock"):
                bad += [f"{path.relative_to(PKG)}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "private names imported from another module: " + "; ".join(bad)


def test_each_stage_keeps_its_config_class_in_config_py():
    """stages/<name>/config.py holds every *Config dataclass of the stage (one place to look)."""
    seen = 0
    for path in (PKG / "stages").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                seen += 1
                assert path.name == "config.py", f"{node.name} lives in {path.relative_to(PKG)}, not config.py"
    assert seen >= 8
    for pkg in (PKG / "stages").iterdir():
        if (pkg / "__init__.py").is_file():
            assert (pkg / "stage.py").is_file(), f"stages/{pkg.name} has no stage.py"


def test_no_two_modules_share_a_name_and_none_is_too_long():
    from collections import Counter

    stems = Counter(p.stem for p in PKG.rglob("*.py") if p.stem not in ("__init__", "__main__", "stage", "config"))
    assert not [s for s, n in stems.items() if n > 1], f"module names used twice: {[s for s, n in stems.items() if n > 1]}"
    long = [f"{p.relative_to(PKG)} ({n})" for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# ----------------------------------------------------------------------------- dependencies

OPTIONAL = {"datasets": "tokenclock[datasets] (hf: corpus sources)", "psutil": "bench extra",
            "pytest": "tests", "hypothesis": "tests"}


def _declared() -> set[str]:
    """Distributions tokenclock depends on (no extras), as normalised names."""
    import importlib.metadata as md
    import re

    reqs = md.requires("tokenclock") or []
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in reqs if "extra ==" not in r}


def _extras_of(module: str) -> list[str]:
    """The extras of pyproject.toml that install `module`'s distribution (a module that needs one
    says `pip install 'tokenclock[<extra>]'`)."""
    import re

    import tomllib

    extras = tomllib.loads((PKG.parents[1] / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    dist = _dist_of(module)
    return [name for name, reqs in extras.items()
            if any(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") == dist for r in reqs)]


@functools.cache
def _distributions() -> dict:
    """importlib.metadata.packages_distributions(), read once (it scans every installed package)."""
    import importlib.metadata as md

    return md.packages_distributions()


def _dist_of(module: str) -> str | None:
    dists = _distributions().get(module)
    return dists[0].lower().replace("_", "-") if dists else None


def _third_party(imports: set[str]) -> set[str]:
    import sys

    return {m for m in imports if m not in sys.stdlib_module_names and m != "tokenclock"
            and m not in OPTIONAL and not m.startswith("_")}


def _imports_of(source: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_every_package_the_code_imports_is_a_dependency():
    """pip install tokenclock is enough for every code path (optional ones name their extra)."""
    declared = _declared()
    used = set()
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        used |= {m for m in _third_party(_imports_of(text))
                 if not any(f"tokenclock[{extra}]" in text for extra in _extras_of(m))}
    missing = sorted(m for m in used if _dist_of(m) not in declared)
    assert not missing, f"imported but not in pyproject dependencies: {missing}"


def test_readme_python_examples_need_only_dependencies():
    import re

    readme = (PKG.parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    used = set()
    for b in blocks:
        used |= _third_party(_imports_of(b))
    missing = sorted(m for m in used if _dist_of(m) not in _declared())
    assert not missing, f"the README's Python examples import {missing}, not dependencies of tokenclock"


def test_importing_tokenclock_loads_no_heavy_library():
    """`tokenclock --help` and `import tokenclock` stay fast: torch, transformers and matplotlib
    load on first use."""
    import subprocess
    import sys

    code = ("import sys, tokenclock, tokenclock.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_readme_python_names_exist():
    """Every tokenclock name the README's Python examples use is there (tc.X and from-imports)."""
    import importlib
    import re

    import tokenclock as tc

    readme = (PKG.parents[1] / "README.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", readme, flags=re.S))
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tokenclock"):
            mod = importlib.import_module(node.module)
            for a in node.names:
                assert hasattr(mod, a.name), f"README: from {node.module} import {a.name}"
    for name in set(re.findall(r"\btc\.([a-z_]+)\(", readme)):
        assert callable(getattr(tc, name, None)), f"README uses tc.{name}, which tokenclock does not export"


def test_readme_layout_names_every_module():
    """The docs' "Layout of the code" (docs/contributing/layout.md) is the map of the tree: every
    module is on it."""
    import re

    layout = (PKG.parents[1] / "docs" / "contributing" / "layout.md").read_text()
    layout = layout[: layout.index("\n## ")]  # the map and its rules, not the docs section below
    missing = [str(p.relative_to(PKG)) for p in sorted(PKG.rglob("*.py"))
               if p.stem not in ("__init__", "__main__") and not re.search(rf"\b{p.stem}\b", layout)]
    assert not missing, f"modules missing from docs/contributing/layout.md: {missing}"
    for folder in sorted(d for d in PKG.rglob("*") if d.is_dir() and (d / "__init__.py").is_file() and d != PKG):
        assert folder.relative_to(PKG).as_posix() in layout, f"folder {folder.relative_to(PKG)} not in the layout"
