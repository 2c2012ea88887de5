"""Only functions on the ScienceLayer may load numpy, pandas, scikit-learn or scipy: every other
function's handler module is imported in one fresh process and none of those may be loaded after it.
The forecast function itself must load them (a science function), so the check can fail."""

from __future__ import annotations

import json
import subprocess
import sys

from ems_local.template import ROOT, Stack

SCIENCE = ("numpy", "pandas", "sklearn", "scipy", "highspy")


def _loaded_after_importing(code_uris: list[str]) -> dict[str, list[str]]:
    script = (
        "import importlib.util, json, sys\n"
        f"sys.path[:0] = {[str(ROOT / 'layers' / 'core'), str(ROOT)]!r}\n"
        "found = {}\n"
        f"for uri in {code_uris!r}:\n"
        "    before = set(sys.modules)\n"
        "    spec = importlib.util.spec_from_file_location('fn_' + uri.strip('/').replace('/', '_'), uri + 'app.py')\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"    found[uri] = sorted({{m.split('.')[0] for m in set(sys.modules) - before}} & set({SCIENCE!r}))\n"
        "print(json.dumps(found))\n"
    )
    env = {"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_no_function_off_the_science_layer_loads_it() -> None:
    functions = Stack.from_file().template["Resources"]
    plain, science = [], []
    for resource in functions.values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        uses_science = any(layer == {"Ref": "ScienceLayer"} for layer in props.get("Layers", []))
        (science if uses_science else plain).append(props["CodeUri"])
    assert sorted(science) == ["functions/forecast/", "functions/optimizer/"]
    loaded = _loaded_after_importing(plain)
    assert {uri: mods for uri, mods in loaded.items() if mods} == {}
    # the science function does load them: the check sees what it looks for (in a process of its
    # own: after the optimiser's import, which loads numpy, the forecast's loads nothing new)
    assert _loaded_after_importing(["functions/forecast/"])["functions/forecast/"][:1] == ["numpy"]
