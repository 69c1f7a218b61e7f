import subprocess
import sys

import gpmcli

COMMANDS = ["sample", "fid", "stats", "convert", "train", "models"]


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and gpmcli.__version__ in out


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "gpmcli", "--help"], capture_output=True, text=True, check=True).stdout
    for c in COMMANDS:
        assert c in out
    out = subprocess.run([sys.executable, "-m", "gpmcli", "models", "--help"], capture_output=True, text=True).stdout
    for c in ("list", "pull", "info", "verify"):
        assert c in out


def test_unknown_model_is_one_line_usage_error():
    p = subprocess.run([sys.executable, "-m", "gpmcli", "-q", "sample", "--model", "nope", "-o", "/tmp/x"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "unknown --model" in p.stderr
