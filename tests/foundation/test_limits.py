"""The request limits shared by server and clients have one home, reelscan.limits (protos/reelscan/limits.py), and
the client can import it without server code. (The limits' behaviour at their value: tests/jobs/test_job_limits.py,
tests/scan/test_scan_e2e.py::test_request_limits_at_their_one_value, tests/scan/test_library_servicer.py.)"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

from reelscan import limits
from reelscan.client import rpc

ROOT = Path(__file__).resolve().parents[2]
LIMIT_NAMES = ("MAX_PAGE_SIZE", "MAX_PATH_CHARS", "MAX_ID_CHARS", "MAX_JOB_ID_LENGTH")


def sources() -> list[Path]:
    files = [*(ROOT / "service").rglob("*.py"), *(ROOT / "client").rglob("*.py"), *(ROOT / "protos").rglob("*.py")]
    return [f for f in files if "_pb2" not in f.name]


def test_each_limit_is_defined_once() -> None:
    definition = re.compile(rf"^\s*({'|'.join(LIMIT_NAMES)})\s*(:[^=]*)?=", re.MULTILINE)
    homes = {
        (str(f.relative_to(ROOT)), m.group(1)) for f in sources() for m in definition.finditer(f.read_text("utf-8"))
    }
    assert homes == {
        ("protos/reelscan/limits.py", name) for name in ("MAX_PAGE_SIZE", "MAX_PATH_CHARS", "MAX_ID_CHARS")
    }


def test_job_ids_are_checked_in_one_place() -> None:
    # fields.job_id names the field it checks (job_id, parent_id): its message is built from that name
    messages = ("job_id is required", "{name} is required")
    checks = {str(f.relative_to(ROOT)) for f in sources() if any(m in f.read_text("utf-8") for m in messages)}
    assert checks == {"service/api/fields.py"}


def test_the_client_caps_pages_at_the_shared_limit() -> None:
    assert rpc.page_size_for(0, 5000) == limits.MAX_PAGE_SIZE
    assert rpc.page_size_for(0, 7) == 7
    assert not re.search(r"\b\d{3,}\b", inspect.getsource(rpc.page_size_for))  # no number of its own


def test_limits_import_no_server_code() -> None:
    """The shared limits module imports nothing (no gRPC, no protobuf), and a process that imports the client
    loads no server module."""
    code = (
        "import sys; before = set(sys.modules); import reelscan.limits; "
        "assert set(sys.modules) - before <= {'reelscan', 'reelscan.limits'}, set(sys.modules) - before; "
        "import reelscan.client.rpc; "
        "loaded = [m for m in sys.modules if m.startswith('reelscan.service')]; assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
