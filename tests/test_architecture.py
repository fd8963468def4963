"""The shape of the package: imports point one way (no cycle among tokenclock's modules, counting
imports inside functions too), and every module says in its opening lines what it is for."""
from __future__ import annotations

import ast
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


def _dist_of(module: str) -> str | None:
    import importlib.metadata as md

    dists = md.packages_distributions().get(module)
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
    """The README's "Layout of the code" is the map of the tree: every module is on it."""
    import re

    readme = (PKG.parents[1] / "README.md").read_text()
    layout = readme[readme.index("## Layout of the code"):]
    layout = layout[: layout.find("\n## ", 5) if "\n## " in layout[5:] else len(layout)]
    missing = [str(p.relative_to(PKG)) for p in sorted(PKG.rglob("*.py"))
               if p.stem not in ("__init__", "__main__") and not re.search(rf"\b{p.stem}\b", layout)]
    assert not missing, f"modules missing from the README layout: {missing}"
    for folder in sorted(d for d in PKG.rglob("*") if d.is_dir() and (d / "__init__.py").is_file() and d != PKG):
        assert folder.relative_to(PKG).as_posix() in layout, f"folder {folder.relative_to(PKG)} not in the layout"
