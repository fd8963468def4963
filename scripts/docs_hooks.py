"""The documentation site's generated pages, as a MkDocs hook (`hooks:` in mkdocs.yml): the config
reference from the config dataclasses' field docstrings, the CLI reference from the argparse parser,
the dated records of results/ and CHANGELOG.md. Reads the code, results/ and CHANGELOG.md; writes no file (the pages exist only
inside the build, so they cannot go stale).

The config dataclasses are found by walking the fields of the root configs (tokenclock.config.Config
and the study's StudyConfig), and each field's docstring is read with `ast` from its class's source,
so a class documents itself wherever it lives.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import sys
import textwrap
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
CONFIG_PAGE = "reference/config.md"
CLI_PAGE = "reference/cli.md"
RESULTS_INDEX = "results/index.md"


# ----------------------------------------------------------------------------- config reference


def field_docstrings(cls: type) -> dict[str, str]:
    """{field name: its docstring}: the string literal right after each annotated class attribute."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    out = {}
    for node, after in zip(body, body[1:] + [None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and \
                isinstance(after.value.value, str):
            out[node.target.id] = inspect.cleandoc(after.value.value)
    return out


def field_annotations(cls: type) -> dict[str, str]:
    """{field name: its annotation as written in the source}."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    return {n.target.id: ast.unparse(n.annotation) for n in body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def config_sections(root: type, prefix: str = "") -> list[tuple[str, type]]:
    """[(dotted section name, dataclass)] for `root` and every dataclass-typed field below it."""
    out = [(prefix, root)]
    for f in dataclasses.fields(root):
        typ = _section_type(root, f)
        if typ is not None:
            out += config_sections(typ, f"{prefix}.{f.name}" if prefix else f.name)
    return out


def _section_type(cls: type, f: dataclasses.Field) -> type | None:
    """The dataclass a field holds, from its default (robust to annotations imported only for type
    checkers), else from its resolved annotation; None for a plain value."""
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return type(value)
    try:
        typ = typing.get_type_hints(cls).get(f.name)
    except NameError:
        return None
    return typ if isinstance(typ, type) and dataclasses.is_dataclass(typ) else None


def config_roots() -> list[tuple[str, str, type]]:
    """(title, key prefix, root dataclass) of each kind of config file."""
    from tokenclock.config import Config
    from tokenclock.study.config import StudyConfig
    return [("A run's config", "", Config), ("A study's grid", "study", StudyConfig)]


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "(section)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _cell(text: str) -> str:
    """Text for one table cell: one line, its pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    """A code span for one table cell (the table extension skips pipes inside backticks)."""
    return f"`{' '.join(text.split())}`"


def undocumented_fields() -> list[str]:
    """Dotted keys of config fields without a docstring (the reference shows them as such)."""
    missing = []
    for _, prefix, root in config_roots():
        for section, cls in config_sections(root, prefix):
            docs = field_docstrings(cls)
            missing += [f"{section}.{f.name}".lstrip(".") for f in dataclasses.fields(cls) if f.name not in docs]
    return missing


def config_reference() -> str:
    """The config reference page (Markdown)."""
    lines = ["# Config reference", "",
             "Generated when the site is built from the config dataclasses: each key's type and default "
             "from the class, its description from the docstring under the field. A config file has one "
             "section per stage; `--set section.key=value` overrides any key (see "
             "[the CLI reference](cli.md)). Unknown keys are errors with a suggestion.", ""]
    for title, prefix, root in config_roots():
        lines += [f"## {title}", ""]
        if prefix == "study":
            lines += ["A study config has two sections: `study:` (below) and `base:`, a run config "
                      "(the sections above) applied to every run of the grid.", ""]
        for section, cls in config_sections(root, prefix):
            docs, notes = field_docstrings(cls), field_annotations(cls)
            heading = f"`{section}`" if section else "top level"
            lines += [f"### {heading}", "",
                      f"`{cls.__module__}.{cls.__qualname__}`: {_cell(inspect.getdoc(cls) or '')}", "",
                      "| key | type | default | description |", "|---|---|---|---|"]
            for f in dataclasses.fields(cls):
                key = f"{section}.{f.name}" if section else f.name
                lines.append(f"| `{key}` | {_code(notes.get(f.name, ''))} | {_code(_default(f))} | "
                             f"{_cell(docs.get(f.name, '(no docstring)'))} |")
            lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI reference


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """{name: (one-line help, parser)} of the parser's subcommands, in --help order."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help or "" for c in action._choices_actions}
    return {name: (helps.get(name, ""), sp) for name, sp in action.choices.items()}


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    fmt = parser._get_formatter()
    rows = ["| argument | default | description |", "|---|---|---|"]
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if a.option_strings:
            name = ", ".join(a.option_strings)
            if a.nargs != 0:
                name += " " + fmt._format_args(a, a.metavar or a.dest.upper())
        else:
            name = fmt._format_args(a, a.metavar or a.dest)
        default = "" if a.default in (None, False, argparse.SUPPRESS) or a.nargs == 0 else _code(str(a.default))
        required = " (required)" if a.required and a.option_strings else ""
        rows.append(f"| {_code(name)} | {default} | {_cell(fmt._expand_help(a) if a.help else '')}"
                    f"{required} |")
    return rows


def _fixed_width(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The usage lines wrapped at 100 columns whatever the terminal (the page is the same everywhere)."""
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=100)
    return parser


def cli_reference() -> str:
    """The CLI reference page (Markdown), from tokenclock.cli.build_parser()."""
    from tokenclock.cli import build_parser
    parser = _fixed_width(build_parser())
    lines = ["# CLI reference", "",
             "Generated when the site is built from the argparse parser of `tokenclock.cli`; "
             "`tokenclock COMMAND --help` prints the same. Every command that reads a config takes "
             "`--config FILE_OR_PRESET` and repeatable `--set key=value` overrides "
             "([config reference](config.md)); exit codes are in [Errors](errors.md).", "",
             "```text", parser.format_usage().strip(), "```", "", _cell(parser.description or ""), "",
             *_options_table(parser), ""]
    for name, (help_text, sp) in subcommands(parser).items():
        _fixed_width(sp)
        lines += [f"## tokenclock {name}", "", _cell(help_text[:1].upper() + help_text[1:]) + ".", ""]
        if sp.description:
            lines += [_cell(sp.description), ""]
        lines += ["```text", sp.format_usage().strip(), "```", "", *_options_table(sp), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- results records


def records() -> list[Path]:
    """The dated records in results/, newest first (file names start with the date)."""
    return sorted((p for p in RESULTS.glob("*.md") if p.name != "README.md"), key=lambda p: p.name,
                  reverse=True)


def results_index() -> str:
    lines = ["# Results", "",
             "One dated record per measurement that a number in these docs rests on: the exact command, "
             "the machine, the printed output and the artifact paths. A newer record supersedes an "
             "older one on the same question; the older one stays as it was.", "",
             "| date | record |", "|---|---|"]
    for p in records():
        title = next((ln[2:].strip() for ln in p.read_text().splitlines() if ln.startswith("# ")), p.stem)
        lines.append(f"| {p.name[:10]} | [{_cell(title)}]({p.name}) |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the MkDocs hook


def on_files(files, config):
    """Add the generated pages and the results/ records to the site (nothing is written to docs/)."""
    from mkdocs.structure.files import File
    if str(ROOT / "src") not in sys.path:  # document this checkout's code, whatever the venv installed
        sys.path.insert(0, str(ROOT / "src"))
    files.append(File.generated(config, CONFIG_PAGE, content=config_reference()))
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    files.append(File.generated(config, RESULTS_INDEX, content=results_index()))
    for p in records():
        files.append(File.generated(config, f"results/{p.name}", abs_src_path=str(p)))
    files.append(File.generated(config, "changelog.md", abs_src_path=str(ROOT / "CHANGELOG.md")))
    return files
