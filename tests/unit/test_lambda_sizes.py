"""Lambda's limit of 250 MB unzipped for a function with all its layers, checked on what `sam build`
made (.aws-sam/build, written by `make build`, which `make test` runs before the tests where a
python3.12 is found). Without a build the check is skipped, saying so; the arithmetic is tested on a
made-up build either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ems_local.template import ROOT, load

LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024  # function code plus every layer (Lambda quotas)
BUILD = ROOT / ".aws-sam" / "build"


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _ref(value: Any) -> str | None:
    """The logical id of a `!Ref X` as the loader reads it ({"Ref": "X"}), or of a plain string."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    return value if isinstance(value, str) else None


def unzipped_bytes(build: Path) -> dict[str, int]:
    """Each function of the built template: its code's size plus its layers' (Globals' first)."""
    template = load(build / "template.yaml")
    resources = template["Resources"]
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    sizes: dict[str, int] = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        total = tree_bytes(build / str(props["CodeUri"]))
        for layer in [*global_layers, *props.get("Layers", [])]:
            layer_id = _ref(layer)
            if layer_id in resources:
                total += tree_bytes(build / str(resources[layer_id]["Properties"]["ContentUri"]))
        sizes[name] = total
    return sizes


def test_every_function_with_its_layers_fits_lambda_s_limit() -> None:
    if not (BUILD / "template.yaml").is_file():
        pytest.skip("no sam build output (.aws-sam/build): run `make build` (it needs a python3.12)")
    built = set(load(BUILD / "template.yaml")["Resources"])
    missing = sorted(
        n
        for n, r in load()["Resources"].items()
        if r["Type"].startswith("AWS::Serverless::") and n not in built
    )
    if missing:
        pytest.skip(
            f"the sam build output is older than template.yaml (it lacks {', '.join(missing)}): run `make build`"
        )
    sizes = unzipped_bytes(BUILD)
    over = {n: round(b / 2**20, 1) for n, b in sizes.items() if b > LAMBDA_UNZIPPED_LIMIT_BYTES}
    assert not over, f"unzipped MB over Lambda's 250: {over}"


def test_the_sizes_add_the_function_to_its_layers(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Globals:\n  Function:\n    Layers: [!Ref CoreLayer]\n"
        "Resources:\n"
        "  CoreLayer: {Type: AWS::Serverless::LayerVersion, Properties: {ContentUri: CoreLayer}}\n"
        "  ScienceLayer: {Type: AWS::Serverless::LayerVersion, Properties: {ContentUri: ScienceLayer}}\n"
        "  PlainFunction: {Type: AWS::Serverless::Function, Properties: {CodeUri: PlainFunction}}\n"
        "  OptimizerFunction: {Type: AWS::Serverless::Function,\n"
        "                      Properties: {CodeUri: OptimizerFunction, Layers: [!Ref ScienceLayer]}}\n"
    )
    for folder, size in (
        ("CoreLayer", 1000),
        ("ScienceLayer", 5000),
        ("PlainFunction", 10),
        ("OptimizerFunction", 20),
    ):
        (tmp_path / folder / "python").mkdir(parents=True)
        (tmp_path / folder / "python" / "blob").write_bytes(b"x" * size)
    assert unzipped_bytes(tmp_path) == {"PlainFunction": 1010, "OptimizerFunction": 6020}
