"""Safe loading of foreign weight files: nothing in a file runs unless --trust-pickle is given."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gpmcli.errors import UnsafeFileError
from gpmcli.safeload import load_weights, scan_pickle_globals, state_dict_of

ROOT = Path(__file__).resolve().parent.parent


class _CreatesFile:
    """Unpickling this calls open(path, "w"), which creates the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil(tmp_path: Path, fmt: str) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    f = tmp_path / f"evil-{fmt}.pth"
    obj = {"weight": torch.ones(3), "payload": _CreatesFile(marker)}
    if fmt == "zip":
        torch.save(obj, f)
    elif fmt == "legacy":
        torch.save(obj, f, _use_new_zipfile_serialization=False)
    else:  # a plain protocol-4 pickle (STACK_GLOBAL opcodes, which torch's safe unpickler cannot even parse)
        f.write_bytes(pickle.dumps(obj, protocol=4))
    assert not marker.exists()
    return f, marker


@pytest.mark.parametrize("fmt", ["zip", "legacy", "pickle4"])
def test_crafted_pickle_is_refused_and_runs_nothing(cli, tmp_path, fmt):
    f, marker = _evil(tmp_path, fmt)
    code, out, err = cli("models", "info", str(f))
    assert code == 5, err
    assert "open" in err and "--trust-pickle" in err  # names the offending global (io.open)
    assert "Traceback" not in err
    assert not marker.exists()
    with pytest.raises(UnsafeFileError):
        load_weights(f)
    assert not marker.exists()


def test_trust_pickle_runs_the_file_only_when_given(tmp_path):
    f, marker = _evil(tmp_path, "zip")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "gpmcli", "models", "info", f.name], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 5 and not marker.exists(), p.stderr
    p = subprocess.run([sys.executable, "-m", "gpmcli", "models", "info", f.name, "--trust-pickle", "--json"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert marker.exists()  # the code in the file did run: that is what --trust-pickle means
    assert json.loads(p.stdout)["tensors"][0]["name"] == "weight"


def test_whole_module_pickle_names_the_class(cli, tmp_path):
    f = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(3, 2), f)
    code, _, err = cli("models", "info", str(f))
    assert code == 5 and "torch.nn.modules.linear.Linear" in err


def test_os_system_global_is_named(tmp_path):
    f = tmp_path / "f.pth"
    torch.save({"f": os.system, "w": torch.zeros(1)}, f)
    with pytest.raises(UnsafeFileError, match=r"\bsystem\b"):
        load_weights(f)
    assert any(g.endswith(".system") for g in scan_pickle_globals(f))


@pytest.mark.parametrize("legacy", [False, True])
def test_plain_state_dict_loads_and_is_listed(cli, tmp_path, legacy):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 7))
    sd = net.state_dict()
    f = tmp_path / "sd.pth"
    torch.save(sd, f, _use_new_zipfile_serialization=not legacy)
    got = load_weights(f)
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    code, out, err = cli("models", "info", str(f), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {t["name"]: t["shape"] for t in data["tensors"]} == {k: list(v.shape) for k, v in sd.items()}
    assert data["parameters"] == sum(v.numel() for v in sd.values())
    assert {t["name"]: t["dtype"] for t in data["tensors"]}["1.num_batches_tracked"] == "int64"


def test_harmless_extras_are_allowed(tmp_path):
    f = tmp_path / "ckpt.ckpt"
    sd = torch.nn.Linear(2, 2).state_dict()
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1, nz=100), "epoch": np.int64(3),
                "loss": np.float32(0.5), "hist": np.arange(4.0)}, f)
    obj = load_weights(f)
    assert obj["args"].nz == 100 and float(obj["loss"]) == 0.5
    assert state_dict_of(obj).keys() == sd.keys()


def test_not_a_weight_file_is_usage_error(cli, tmp_path):
    f = tmp_path / "junk.pth"
    f.write_bytes(b"this is not a checkpoint\n" * 10)
    code, _, err = cli("models", "info", str(f))
    assert code == 2 and "not a torch weight file" in err
    code, _, err = cli("models", "info", str(tmp_path / "missing.pth"))
    assert code == 2


def test_legacy_asset_file_loads_safely(cli, assets):
    """The csinva LeNet weights are in torch's legacy (non-zip) format."""
    from gpmcli.nets.lenet import LeNet5

    f = next((assets / "csinva-mnist-lenet").glob("*.pth"))
    with open(f, "rb") as fh:
        assert fh.read(2) != b"PK"  # not a zip archive
    code, out, err = cli("models", "info", str(f), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["parameters"] == sum(p.numel() for p in LeNet5().parameters())
    assert set(state_dict_of(load_weights(f))) == set(LeNet5().state_dict())
