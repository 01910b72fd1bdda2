"""What ``podsweep`` imports before it does anything: only what the command runs.

Every call pays its imports first (the test suite alone makes thousands of calls), so the
HPO library, the cluster package, the server and httpx load in the commands that use them.
These tests run the real entry point in a fresh interpreter and read its ``sys.modules``:
adding a heavy import at the top of a CLI module makes them fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from podsweep.cluster import ENGINES
from podsweep.model import CLUSTER_NAMES

GOLDEN = Path(__file__).parent / "golden" / "hpo-format1.jsonl"

HEAVY = ("httpx", "fastapi", "starlette", "uvicorn", "kubernetes", "podsweep.client",
         "podsweep.cluster", "podsweep.hpo", "podsweep.hpoview", "podsweep.server",
         "podsweep.store", "podsweep.scheduler", "podsweep.runtime")

# podsweep's entry point with these arguments; prints the modules loaded, however it ends
RUN = """
import json, sys
from podsweep.cli import main
sys.argv = ["podsweep", *sys.argv[1:]]
try:
    main()
finally:
    print(json.dumps(sorted(sys.modules)))
"""


def loaded(code: str, *args: str, home: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PODSWEEP_URL", "PODSWEEP_TOKEN", "PODSWEEP_PROJECT")}
    env["PODSWEEP_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env=env, timeout=60)
    return set(json.loads(out.stdout.splitlines()[-1])), out


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_loads_nothing_heavy(tmp_path):
    modules, _ = loaded("import json, sys, podsweep.cli; print(json.dumps(sorted(sys.modules)))",
                        home=tmp_path)
    assert "podsweep.cli" in modules
    assert heavy(modules) == []


def test_help_and_commands_that_fail_before_the_api_load_nothing_heavy(tmp_path):
    for args, said in ((["--help"], "Usage: podsweep"), (["up", "--help"], "--cluster"),
                       (["hpo", "--help"], "show"), (["list"], "not logged in")):
        modules, out = loaded(RUN, *args, home=tmp_path)
        assert said in out.stdout + out.stderr, (args, out.stderr)
        assert heavy(modules) == [], args
    (tmp_path / "credentials.json").write_text(json.dumps({"token": "t"}))
    modules, out = loaded(RUN, "list", home=tmp_path)
    assert out.returncode != 0 and "not running" in out.stderr
    assert heavy(modules) == []


def test_the_check_sees_what_a_command_imports(tmp_path):
    """hpo show needs the HPO library: the same check finds it loaded."""
    modules, out = loaded(RUN, "hpo", "show", str(GOLDEN), home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert {"podsweep.hpo", "podsweep.hpoview"} <= modules
    assert [m for m in heavy(modules) if not m.startswith("podsweep.hpo")] == []


def test_the_api_client_loads_httpx_without_its_command_line(tmp_path):
    code = ("import json, sys, podsweep.client; before = sorted(sys.modules); "
            "import httpx._main; print(json.dumps(before))")
    modules, out = loaded(code, home=tmp_path)
    assert out.returncode == 0, out.stderr         # httpx._main stays importable
    assert "httpx" in modules and "httpx._main" not in modules and "rich" not in modules


def test_the_cli_names_the_clusters_the_cluster_package_loads():
    assert tuple(ENGINES) == CLUSTER_NAMES
