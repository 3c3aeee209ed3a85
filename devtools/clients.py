"""``make clients``: intake's typed clients, generated from its OpenAPI document.

The document is built in-process from intake's app, as the app serves it (no server needed), and
written to ``DIR/openapi.json``; from it come

- ``DIR/python``: the ``redvest_intake_client`` package (openapi-python-client; it calls with
  httpx and attrs), configured by devtools/clients/python.yaml;
- ``DIR/typescript``: ``schema.ts`` (openapi-typescript) and ``client.ts``, which calls through
  openapi-fetch. The npm packages are pinned by devtools/clients/typescript/package-lock.json
  and installed there with ``npm ci`` (downloads cached in var/cache/npm).

The clients exist so that other systems and staff consoles build on the document; generating them
is how the build notices when it stops being good enough to generate from. A generator's warning
fails the command (each means a part of the document could not be turned into types), and so
does a schema property the document gives no type (``Any`` in Python, ``unknown`` in
TypeScript).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from devtools.processes import ROOT, venv_env
from services.intake.app import create_app
from shared.settings import Settings

SOURCES = Path(__file__).with_name("clients")
PYTHON_CONFIG = SOURCES / "python.yaml"
TYPESCRIPT_SOURCES = SOURCES / "typescript"
# Copied into DIR/typescript; usage.ts stays behind (the end-to-end test compiles it there).
TYPESCRIPT_FILES = ("package.json", "package-lock.json", "tsconfig.json", "client.ts")
PYTHON_PACKAGE: str = yaml.safe_load(PYTHON_CONFIG.read_text())["package_name_override"]
DEFAULT_OUT = ROOT / "var" / "clients"
NPM_CACHE = ROOT / "var" / "cache" / "npm"
LANGUAGES = ("python", "typescript")
# What makes a schema property typed for a generator.
TYPING_KEYS = frozenset({"type", "$ref", "allOf", "oneOf", "anyOf"})


class GenerationError(RuntimeError):
    """A generator failed or warned, or the document is not good enough to generate from."""


class ToolMissing(GenerationError):
    """node or npm, which the TypeScript client is generated with, is not installed."""


def intake_document() -> dict[str, Any]:
    """intake's OpenAPI document, fetched from its app in-process at the URL the app serves."""
    with tempfile.TemporaryDirectory(prefix="redvest-clients-") as var_dir:
        settings = Settings.from_env(
            "intake",
            {
                "REDVEST_ENV": "development",
                "REDVEST_VAR_DIR": var_dir,
                "PUBLISH_AT_COMMIT": "off",
                "LOG_LEVEL": "WARNING",
            },
        )
        app = create_app(settings)
        prefix = app.config["OPENAPI_URL_PREFIX"].rstrip("/")
        url = f"{prefix}/{app.config['OPENAPI_JSON_PATH'].lstrip('/')}"
        response = app.test_client().get(url)
    if response.status_code != 200 or response.json is None:
        raise GenerationError(f"intake answered {response.status_code} for its document at {url}")
    document: dict[str, Any] = response.json
    return document


def untyped_properties(document: dict[str, Any]) -> set[str]:
    """The components' properties (``Schema.property``) the document gives no type."""
    return {
        f"{name}.{prop}"
        for name, schema in document.get("components", {}).get("schemas", {}).items()
        for prop, spec in schema.get("properties", {}).items()
        if not TYPING_KEYS & spec.keys()
    }


def check_document(document: dict[str, Any]) -> None:
    """Fail on a property the document gives no type."""
    untyped = sorted(untyped_properties(document))
    if untyped:
        raise GenerationError(
            "intake's document gives these properties no type, so clients could only call them "
            f"Any/unknown: {', '.join(untyped)}. Document each field's type in its schema (for a "
            "marshmallow Method or Function field: metadata type/items/properties, or a Nested "
            "field)."
        )


def _run(args: list[str], *, cwd: Path, step: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, env=venv_env(os.environ), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise GenerationError(
            f"{step} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result


def generate_python(document: Path, out: Path) -> Path:
    """The Python client project in ``out`` (replaced); returns its package's directory."""
    _run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--config",
            str(PYTHON_CONFIG),
            "--meta",
            "uv",
            "--output-path",
            str(out),
            "--overwrite",
            "--fail-on-warning",
        ],
        cwd=document.parent,
        step="openapi-python-client",
    )
    return out / PYTHON_PACKAGE


def require_node() -> tuple[str, str]:
    """The paths of node and npm, or ToolMissing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        raise ToolMissing(f"{missing} not found: the TypeScript client needs Node.js 20 and npm")
    return node, npm


def generate_typescript(document: Path, out: Path) -> Path:
    """``schema.ts`` and ``client.ts`` in ``out`` (replaced), its npm packages installed."""
    _, npm = require_node()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in TYPESCRIPT_FILES:
        shutil.copyfile(TYPESCRIPT_SOURCES / name, out / name)
    _run(
        [
            npm,
            "ci",
            "--cache",
            str(NPM_CACHE),
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ],
        cwd=out,
        step="npm ci",
    )
    generator = out / "node_modules" / ".bin" / "openapi-typescript"
    result = _run(
        # A default is what intake fills in for a field left out, not a promise it is sent. A .ts
        # rather than a .d.ts: tsc checks it while it skips the libraries' declarations.
        [str(generator), str(document), "--output", "schema.ts", "--default-non-nullable=false"],
        cwd=out,
        step="openapi-typescript",
    )
    # openapi-typescript warns (and goes on) on what it cannot resolve into a type.
    warnings = [line.strip() for line in result.stderr.splitlines() if "\u26a0" in line]
    if warnings:
        raise GenerationError("openapi-typescript warned:\n" + "\n".join(warnings))
    return out


def generate(out: Path, languages: tuple[str, ...] = LANGUAGES) -> None:
    """Write intake's document and its clients in ``languages`` under ``out``."""
    document = intake_document()
    check_document(document)
    out.mkdir(parents=True, exist_ok=True)
    path = (out / "openapi.json").resolve()
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    if "python" in languages:
        generate_python(path, out.resolve() / "python")
    if "typescript" in languages:
        generate_typescript(path, out.resolve() / "typescript")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.clients",
        description="Generate intake's typed clients from its OpenAPI document",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: var/clients")
    parser.add_argument("--only", choices=LANGUAGES, help="generate one client only")
    args = parser.parse_args(argv)
    languages = (args.only,) if args.only else LANGUAGES
    try:
        generate(args.out, languages)
    except GenerationError as error:
        print(f"clients: {error}", file=sys.stderr)
        return 1
    for language in languages:
        print(f"clients: {language} client in {args.out / language}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
