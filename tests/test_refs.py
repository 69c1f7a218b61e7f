"""Every command that takes a model or checkpoint reference accepts the same forms and refuses the rest the same way
(gpmcli.refs), and a new checkpoint source is one module plus one registry line."""

from __future__ import annotations

import json
import shutil
import textwrap

import numpy as np
import pytest

# (name, command builder): REF stands where the reference goes; OUT is a fresh output folder per run
COMMANDS = {
    "models pull": lambda ref, out: ("models", "pull", ref),
    "models info": lambda ref, out: ("models", "info", ref),
    "models verify": lambda ref, out: ("models", "verify", ref),
    "sample --checkpoint": lambda ref, out: ("-q", "sample", "--model", "edm", "-c", ref, "-n", 2, "--steps", 2,
                                             "-o", out),
    "sample --score": lambda ref, out: ("-q", "sample", "--model", "edm", "--score", ref, "-n", 2, "--steps", 2,
                                        "-o", out),
    "train score-gan --score": lambda ref, out: ("-q", "train", "score-gan", "--data", "pentagon", "--score", ref,
                                                 "--steps", 1, "--batch-size", 8, "-o", out),
}


@pytest.fixture
def forms(cli, hub_server, tmp_path, monkeypatch):
    """One score network for the pentagon data, written as every accepted reference form."""
    from hub_fixtures import files_of_dir

    code, _, err = cli("-q", "train", "score", "--data", "pentagon", "--steps", 2, "--batch-size", 16, "--arch",
                       "mlp", "-o", tmp_path / "ck")
    assert code == 0, err
    (tmp_path / "ck" / "train_state.pt").unlink()
    reg = tmp_path / "registry"
    shutil.copytree(tmp_path / "ck", reg / "tiny" / "score")
    (reg / "registry.toml").write_text('[bundles.tiny]\ndescription = "a tiny score"\nscore = "tiny/score"\n')
    monkeypatch.setenv("GPM_CHECKPOINTS", str(reg))
    hub_server.add_revision("org/tiny", files_of_dir(tmp_path / "ck"), tags=("v1",))
    mixture = tmp_path / "mix.json"
    mixture.write_text(json.dumps({"weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.0]],
                                   "covs": [[[0.1, 0.0], [0.0, 0.1]]] * 2}))
    return {"bundle": "tiny", "folder": str(tmp_path / "ck"), "hf": "hf:org/tiny@v1", "bare hub": "org/tiny@v1",
            "toy name": "toy:pentagon", "toy file": f"toy:{mixture}"}


REFUSED = {"nothing": "no-such-thing", "bad hub": "hf:org", "empty toy": "toy:", "user url": "url:https://x.org/w.pkl",
           "unknown scheme": "nope:thing"}


def test_every_command_takes_the_same_reference_forms(cli, forms, tmp_path):
    runs = 0
    for form, ref in forms.items():
        for name, build in COMMANDS.items():
            runs += 1
            code, _, err = cli(*build(ref, tmp_path / f"out{runs}"))
            assert code == 0, (form, name, err)
    for form, ref in REFUSED.items():
        lines = set()
        for name, build in COMMANDS.items():
            runs += 1
            code, _, err = cli(*build(ref, tmp_path / f"out{runs}"))
            assert code == 2, (form, name, code, err)
            assert "Traceback" not in err
            lines.add(err.strip().splitlines()[-1])
        assert len(lines) == 1, (form, lines)  # the same one-line refusal from every command


def test_the_same_network_under_every_form_gives_the_same_samples(cli, forms, tmp_path):
    got = {}
    for form in ("bundle", "folder", "hf", "bare hub"):
        code, _, err = cli("-q", "sample", "--model", "edm", "-c", forms[form], "-n", 3, "--steps", 3, "-o",
                           tmp_path / form)
        assert code == 0, err
        got[form] = np.load(tmp_path / form / "samples.npz")["samples"]
    for form, x in got.items():
        np.testing.assert_array_equal(x, got["folder"], err_msg=form)


DIR_SCHEME = '''
    """``dir:PATH``: a checkpoint folder named explicitly (a source added as one file plus a registry line)."""
    from pathlib import Path

    from gpmcli.errors import UsageError
    from gpmcli.refs.base import Ref


    class DirRef(Ref):
        kind = source = "dir"

        @classmethod
        def parse(cls, text, **kw):
            if not Path(text[4:]).is_dir():
                raise UsageError(f"{text}: no such folder")
            return cls(text, text, **kw)

        def _load(self, *, device, trust_pickle):
            from gpmcli.checkpoint import load_checkpoint

            return load_checkpoint(self.value[4:], ref=self.value, device=device, trust_code=trust_pickle)

        def _verify(self):
            from gpmcli.hashing import sha256_file

            return {"status": "ok", "sha256": sha256_file(Path(self.value[4:]) / "model.safetensors")}

        def info(self, *, trust_pickle=False):
            from gpmcli.describe import checkpoint_info

            return checkpoint_info(self.value[4:], ref=self.value)
'''


def test_a_new_checkpoint_source_is_one_file_and_one_registry_line(cli, forms, tmp_path, monkeypatch):
    from gpmcli import refs
    from gpmcli.hashing import sha256_file

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "dirscheme.py").write_text(textwrap.dedent(DIR_SCHEME))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.setitem(refs.SCHEMES, "dir", "dirscheme:DirRef")  # the registry line

    ref = f"dir:{forms['folder']}"
    assert refs.parse_ref(ref).kind == "dir"
    code, _, err = cli("-q", "sample", "--model", "edm", "-c", ref, "-n", 3, "--steps", 3, "-o", tmp_path / "d")
    assert code == 0, err
    code, _, err = cli("-q", "sample", "--model", "edm", "-c", forms["folder"], "-n", 3, "--steps", 3, "-o",
                       tmp_path / "f")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "samples.npz")["samples"],
                                  np.load(tmp_path / "f" / "samples.npz")["samples"])
    assert json.loads((tmp_path / "d" / "run.json").read_text())["components"]["score"]["ref"] == ref
    code, out, err = cli("models", "verify", ref, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["sha256"] == sha256_file(tmp_path / "ck" / "model.safetensors")
    code, _, err = cli("models", "info", f"dir:{tmp_path / 'missing'}")
    assert code == 2 and "no such folder" in err


def test_reference_errors_are_typed_with_fields(forms):
    """Library users catch the error classes and read what failed from their fields (no message parsing)."""
    from gpmcli.errors import BadReferenceError, DownloadError, RoleMismatchError, UsageError
    from gpmcli.refs import parse_ref

    with pytest.raises(BadReferenceError) as e:
        parse_ref("no-such-thing")
    assert e.value.ref == "no-such-thing" and "toy:NAME" in e.value.forms and e.value.exit_code == 2
    with pytest.raises(RoleMismatchError) as e:
        parse_ref(forms["folder"]).component("discriminator")
    assert (e.value.role, e.value.needed) == ("score", "discriminator")
    with pytest.raises(RoleMismatchError) as e:
        parse_ref("tiny").component("generator")
    assert e.value.needed == "generator" and e.value.role == "score"
    for ref, reason, rev in (("hf:org/absent@v1", "repo", "v1"), ("org/tiny@nope", "revision", "nope")):
        with pytest.raises(DownloadError) as e:
            parse_ref(ref).pull()
        assert (e.value.reason, e.value.revision, e.value.exit_code) == (reason, rev, 3), ref
        assert e.value.repo_id == ref.removeprefix("hf:").split("@")[0]
    assert issubclass(BadReferenceError, UsageError) and issubclass(RoleMismatchError, UsageError)


def test_a_mistyped_local_path_is_a_usage_error_with_the_nearest_names(tmp_path, monkeypatch):
    """``runs/my-scor`` where ``runs/`` exists is a typo of a local path, not the Hub repository ``runs/my-scor``:
    exit 2 with the nearest names; a path under a folder that does not exist is still read as a Hub reference, and
    ``hf:`` forces the Hub."""
    from gpmcli.errors import BadReferenceError
    from gpmcli.refs import parse_ref
    from gpmcli.refs.hub import HubRef

    (tmp_path / "runs" / "my-score").mkdir(parents=True)
    (tmp_path / "runs" / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadReferenceError) as e:
        parse_ref("runs/my-scor")
    msg = str(e.value)
    assert e.value.exit_code == 2 and "did you mean runs/my-score?" in msg and "hf:runs/my-scor" in msg
    with pytest.raises(BadReferenceError, match="the folder runs/my-score does, and has no sub"):
        parse_ref("runs/my-score/sub")
    assert isinstance(parse_ref("someorg/my-scor"), HubRef)
    assert isinstance(parse_ref("hf:runs/my-scor"), HubRef)
