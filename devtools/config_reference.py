"""``python -m devtools.config_reference``: write deploy/CONFIGURATION.md from the code.

Every environment variable a Redvest process reads, its default and who reads it, taken from
where each is read: the settings every service process declares (``shared.settings.VARIABLES``),
the ``os.environ`` look-ups of the web server's settings (deploy/gunicorn.conf.py) and the
``${NAME:-default}`` parameters of deploy/Procfile. ``--check`` writes nothing and exits 1 when
the file differs from what the code says today.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from devtools.processes import PROCFILE, ROOT, procfile_commands
from shared.settings import VARIABLES
from shared.topology import SERVICES

REFERENCE = ROOT / "deploy" / "CONFIGURATION.md"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
ENTRYPOINT = ROOT / "deploy" / "images" / "entrypoint.py"
# ${NAME:-default} or ${NAME}, with the option before it (--threads ${...}, --bind host:${...}).
PARAMETER = re.compile(
    r"(?:(?P<option>--[a-z-]+)\s+)?(?P<glued>[^\s$]*)"
    r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?::-(?P<default>[^}]*))?\}"
)


@dataclass(frozen=True)
class Entry:
    """One row of the reference."""

    name: str
    default: str | None
    read_by: str
    meaning: str


def settings_entries() -> list[Entry]:
    """The variables every service process reads through shared.settings, one per service where
    each service has its own."""
    entries = []
    for variable in VARIABLES:
        if variable.is_per_service:
            entries += [
                Entry(
                    variable.of(service),
                    (variable.default or "").replace("{service}", service) or None,
                    service,
                    variable.meaning,
                )
                for service in SERVICES
            ]
        else:
            read_by = ", ".join(variable.services) or "every service"
            entries.append(Entry(variable.name, variable.default, read_by, variable.meaning))
    return entries


def _looked_up_name(node: ast.AST) -> str | None:
    """The variable a look-up names: a string, or an f-string on the service's name."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "<SERVICE>"
            for part in node.values
        )
    return None


def _environment_lookup(node: ast.AST) -> tuple[str, ast.expr | None] | None:
    """``os.environ.get(NAME[, default])`` or ``env.get(...)``: (NAME, default), else None."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and ast.unparse(node.func.value) in ("os.environ", "env")
        and node.args
    ):
        return None
    name = _looked_up_name(node.args[0])
    if name is None:
        return None
    return name, node.args[1] if len(node.args) > 1 else None


def _default_of(default: ast.expr | None, parent: ast.AST | None) -> str | None:
    """The look-up's default as written: its argument, or what follows an ``or``."""
    if default is None and isinstance(parent, ast.BoolOp) and isinstance(parent.op, ast.Or):
        default = parent.values[-1]
    if default is None:
        return None
    if isinstance(default, ast.Constant):
        return str(default.value) if default.value not in ("", None) else None
    return ast.unparse(default)


def _sentences(docstring: str) -> list[str]:
    """A docstring's sentences, each on one line, without reST's double back-quotes."""
    found = []
    for paragraph in docstring.replace("``", "`").split("\n\n"):
        flat = " ".join(paragraph.split())
        found += [part.rstrip(".:") for part in re.split(r"(?<=[.:])\s+(?=[A-Z`])", flat)]
    return [sentence for sentence in found if sentence]


def _option_before(node: ast.AST, parent: ast.AST | None) -> str | None:
    """The command-line option a look-up fills: ``("--threads", env.get(...))``."""
    if not isinstance(parent, ast.Tuple | ast.List):
        return None
    index = next(i for i, element in enumerate(parent.elts) if element is node)
    option = parent.elts[index - 1] if index else None
    if isinstance(option, ast.Constant) and str(option.value).startswith("--"):
        return f"the `{option.value!s}` option"
    return None


def _meaning(
    name: str, node: ast.AST, *, parents: dict[ast.AST, ast.AST], module_doc: str, assigned: str
) -> str:
    """What a look-up is for: the option it fills, else the module docstring's sentence that
    names it, else the setting it is assigned to, else its function's docstring."""
    option = _option_before(node, parents.get(node))
    if option is not None:
        return option
    naming = [sentence for sentence in _sentences(module_doc) if name in sentence]
    if naming:
        return naming[0]
    function, target = None, None
    ancestor: ast.AST | None = node
    while ancestor is not None:
        if isinstance(ancestor, ast.Assign) and target is None:
            target = ast.unparse(ancestor.targets[0])
        if isinstance(ancestor, ast.FunctionDef):
            function = ancestor
            break
        ancestor = parents.get(ancestor)
    if function is None:
        return assigned.format(target) if target else "read at import"
    summary = (_sentences(ast.get_docstring(function) or "") or [""])[0]
    where = f"`{target}` in `{function.name}()`" if target else f"`{function.name}()`"
    return f"{where}: {summary}" if summary else where


def python_entries(path: Path, *, read_by: str, assigned: str = "`{}`") -> list[Entry]:
    """The variables a Python file reads from the environment, each once, in order."""
    tree = ast.parse(path.read_text())
    module_doc = ast.get_docstring(tree) or ""
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    lookups = sorted(
        (node.lineno, node.col_offset, found, node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and (found := _environment_lookup(node)) is not None
    )
    entries: dict[str, Entry] = {}
    for _, _, (name, default), node in lookups:
        if name not in entries:
            entries[name] = Entry(
                name,
                _default_of(default, parents.get(node)),
                read_by,
                _meaning(name, node, parents=parents, module_doc=module_doc, assigned=assigned),
            )
    return list(entries.values())


def procfile_entries(path: Path = PROCFILE) -> list[Entry]:
    """The parameters of deploy/Procfile's commands (``make run``): the option each fills and
    the processes whose command has it."""
    found: dict[str, tuple[str | None, str, list[str]]] = {}
    for process, command in procfile_commands(path).items():
        for match in PARAMETER.finditer(command):
            fragment = " ".join(filter(None, (match["option"], match[0].split()[-1])))
            _, _, processes = found.setdefault(match["name"], (match["default"], fragment, []))
            processes.append(process)
    return [
        Entry(name, default, ", ".join(processes), f"`{fragment}`")
        for name, (default, fragment, processes) in found.items()
    ]


def _cell(text: str | None) -> str:
    return f"`{text}`" if text else "unset"


def _table(entries: list[Entry]) -> list[str]:
    lines = ["| variable | default | read by | meaning |", "|---|---|---|---|"]
    for entry in entries:
        meaning = entry.meaning.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{entry.name}` | {_cell(entry.default)} | {entry.read_by} | {meaning} |")
    return lines


def _entrypoint_section() -> list[str]:
    if not ENTRYPOINT.exists():
        return []
    return [
        "## The images",
        "",
        "Read by the entrypoint of every service's image (`deploy/images/entrypoint.py`),",
        "which starts the process its argument names: `web`, `worker`, `relay`, `scheduler` or",
        "`migrate`.",
        "",
        *_table(python_entries(ENTRYPOINT, read_by="every process in an image")),
        "",
    ]


def render() -> str:
    """The reference as Markdown."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m devtools.config_reference` from the code; do not edit. -->",
        "",
        "Every process reads its settings from the environment once, at start. In Kubernetes the",
        "shared ones come from the `redvest-config` ConfigMap and the secrets by reference",
        "(`deploy/k8s/base/kustomization.yaml`); on one host from `deploy/compose.yaml`.",
        "",
        "## Every service process",
        "",
        "Read by the web, worker, relay, scheduler and migrate processes and the command line",
        "(`shared/settings.py`). In production a process refuses to start, naming every setting",
        "at fault, when `REDVEST_AUTH_SECRET` is missing or weak, its database URL is not",
        "PostgreSQL, `BROKER_URL` (or `REDIS_URL`) is unset, or `LOG_FORMAT` is `console`.",
        "",
        *_table(settings_entries()),
        "",
        "## The web server",
        "",
        "Read by gunicorn, which runs every service's web process (`deploy/gunicorn.conf.py`).",
        "",
        *_table(python_entries(GUNICORN_CONF, read_by="web", assigned="gunicorn's `{}`")),
        "",
        *_entrypoint_section(),
        "## `make run` on one machine",
        "",
        "Parameters of the commands in `deploy/Procfile`, which `make run` starts and supervises.",
        "",
        *_table(procfile_entries()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None, *, reference: Path = REFERENCE) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.config_reference")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if deploy/CONFIGURATION.md is out of date"
    )
    args = parser.parse_args(argv)
    text = render()
    shown = reference.relative_to(ROOT) if reference.is_relative_to(ROOT) else reference
    if args.check:
        if not reference.exists() or reference.read_text() != text:
            print(
                f"{shown} is out of date: run python -m devtools.config_reference",
                file=sys.stderr,
            )
            return 1
        print(f"{shown} is up to date")
        return 0
    reference.write_text(text)
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
