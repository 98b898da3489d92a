"""Run (or reuse) the experiment scripts of the top-level ``analyses/`` folder.

Each script is loaded from its file and its ``main(argv)`` called in this process with
exactly the arguments of the command line recorded in the findings
(``python analyses/<name>.py --scale S --out DIR``). A finished run leaves
``DIR/findings_run.json`` (scale, command, seconds); ``reuse=True`` skips an experiment
whose marker has the same scale.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

ANALYSES = Path(__file__).resolve().parents[3] / "analyses"
MARKER = "findings_run.json"


def script(name: str) -> ModuleType:
    """The experiment script ``analyses/<name>.py`` as a module."""
    path = ANALYSES / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"experiment script {str(path)!r} not found: `tangentlens "
                                "findings` needs a source checkout with the analyses/ folder")
    spec = importlib.util.spec_from_file_location(f"tangentlens_analyses_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def out_dir(data: Path, name: str, scale: str) -> Path:
    """``data/<name>`` at the default scale (the script's own default), else
    ``data/<name>-<scale>``."""
    return Path(data) / (name if scale == "default" else f"{name}-{scale}")


def command(name: str, scale: str, out: Path) -> str:
    return f"python analyses/{name}.py --scale {scale} --out {out}"


def ensure(name: str, scale: str, data: Path, reuse: bool) -> dict:
    """Run ``name`` at ``scale`` into ``out_dir(...)`` unless reusable; its marker dict."""
    out = out_dir(data, name, scale)
    marker = out / MARKER
    if reuse and marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("scale") == scale:
            return {**done, "reused": True}
    t0 = time.time()
    print(f"findings: running {command(name, scale, out)}", file=sys.stderr)
    script(name).main(["--scale", scale, "--out", str(out)])
    done = {"experiment": name, "scale": scale, "out": str(out),
            "command": command(name, scale, out), "seconds": round(time.time() - t0, 1)}
    marker.write_text(json.dumps(done, indent=1))
    return {**done, "reused": False}
