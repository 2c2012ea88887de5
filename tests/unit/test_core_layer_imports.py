"""What ships is what runs in Lambda: no module of the core layer imports the local cloud, the CLI,
the simulator, moto, the broker, the benchmarks or the tests (none of them is in the layer)."""

from __future__ import annotations

import ast
from pathlib import Path

from ems_local.template import ROOT, load

# Top-level packages that exist on a developer's machine and never in Lambda.
NOT_IN_LAMBDA = {"ems_local", "ems_sim", "ems_cli", "moto", "amqtt", "bench", "tests"}


def core_layer_dir() -> Path:
    """The folder `sam build` builds the CoreLayer from: its ContentUri in template.yaml."""
    layer = load()["Resources"]["CoreLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    return (ROOT / layer["Properties"]["ContentUri"]).resolve()


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in `source`, at any nesting (inside
    functions, branches and try blocks too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return sorted(found)


def forbidden_imports(layer: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {package}"
        for path in sorted(layer.rglob("*.py"))
        for line, package in imported_packages(path.read_text())
        if package in NOT_IN_LAMBDA
    ]


def test_the_core_layer_is_the_ems_package() -> None:
    layer = core_layer_dir()
    assert layer == ROOT / "layers" / "core"
    shipped = {p.relative_to(layer).parts[0] for p in layer.rglob("*.py")}
    assert shipped == {"ems"}
    assert (layer / "ems" / "auth" / "service.py").is_file()


def test_no_module_of_the_core_layer_imports_what_lambda_lacks() -> None:
    found = forbidden_imports(core_layer_dir())
    assert not found, "\n".join(found)


def test_imports_are_found_at_any_nesting() -> None:
    source = (
        "import json\n"
        "from . import models\n"
        "def up():\n"
        "    try:\n"
        "        from ems_local.cli import main\n"
        "    except ImportError:\n"
        "        import moto.server as server\n"
        "    if True:\n"
        "        import tests.support, boto3\n"
    )
    assert imported_packages(source) == [
        (1, "json"), (5, "ems_local"), (7, "moto"), (9, "boto3"), (9, "tests"),
    ]  # fmt: skip
