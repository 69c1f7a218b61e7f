"""``gpm convert --from edm-pkl``: EDM network pickles (persistence records embedding their own source) are read
without running any of their code, rebuilt with gpm's EDM networks and give identical denoiser outputs."""

from __future__ import annotations

import copyreg
import pickle
import sys
import types
from collections import OrderedDict

import torch

from gpmcli.nets.edm import EDMNetwork

# a small SongUNet with the published CIFAR-10 VP model's options (positional embedding, standard encoder/decoder,
# [1, 1] resampling, augment_dim 9), reduced in width, depth and resolution
SMALL = dict(embedding_type="positional", encoder_type="standard", decoder_type="standard", channel_mult_noise=1,
             resample_filter=[1, 1], model_channels=32, channel_mult=[1, 2], augment_dim=9, dropout=0.13,
             num_blocks=1, attn_resolutions=[8])
SRC_MARK = "THIS SOURCE MUST NEVER RUN"


class _Persistent:
    """Pickles like a torch_utils.persistence object: _reconstruct_persistent_obj(meta) with the module source."""

    def __init__(self, class_name, state, module_src):
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,))


class _Container:
    """Pickles like a torch.nn.ModuleDict / ModuleList (NEWOBJ of the torch class + BUILD of its __dict__)."""

    def __init__(self, cls, state):
        self.cls, self.state = cls, state

    @property
    def __class__(self):  # what pickle checks NEWOBJ against
        return self.cls

    def __reduce_ex__(self, protocol):
        return (copyreg.__newobj__, (self.cls,), self.state)


def _module_state(m: torch.nn.Module, module_src: str, extra: dict | None = None):
    st = {"training": False, "_parameters": OrderedDict(m._parameters), "_buffers": OrderedDict(m._buffers),
          "_non_persistent_buffers_set": set(), "_modules": OrderedDict(), **(extra or {})}
    for name, sub in m._modules.items():
        st["_modules"][name] = _as_record(sub, module_src) if sub is not None else None
    return st


def _as_record(m: torch.nn.Module, module_src: str):
    if isinstance(m, (torch.nn.ModuleDict, torch.nn.ModuleList)):
        return _Container(type(m), _module_state(m, module_src))
    return _Persistent(type(m).__name__, _module_state(m, module_src), module_src)


def persistence_pickle(net: EDMNetwork, init_kwargs: dict, module_src: str, class_name="VPPrecond") -> bytes:
    """An EDM-style snapshot: {"ema": <persistent VPPrecond>, ...}, with gpm's network standing in for NVlabs'."""
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules["torch_utils"] = types.ModuleType("torch_utils")
    sys.modules["torch_utils.persistence"] = mod
    try:
        top = _Persistent(class_name, _module_state(net, module_src, {"_init_args": (), "_init_kwargs": init_kwargs,
                                                                      "sigma_min": 0.002, "beta_d": 19.9}),
                          module_src)
        return pickle.dumps({"ema": top, "dataset_kwargs": {"resolution": 16}}, protocol=4)
    finally:
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]


def _small_net(seed=0):
    torch.manual_seed(seed)
    net = EDMNetwork("vp", 16, 3, model=SMALL).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


INIT = dict(img_resolution=16, img_channels=3, label_dim=0, use_fp16=False, beta_d=19.9, beta_min=0.1, M=1000,
            epsilon_t=1e-5, model_type="SongUNet", **SMALL)


def test_published_cifar10_vp_layout_has_the_published_size():
    """The published CIFAR-10 DDPM++ VP configuration builds a 55.7M-parameter network (EDM paper, Table 7)."""
    big = dict(SMALL, model_channels=128, channel_mult=[2, 2, 2], num_blocks=4, attn_resolutions=[16])
    n = sum(p.numel() for p in EDMNetwork("vp", 32, 3, model=big).parameters())
    assert round(n / 1e6, 1) == 55.7


def test_round_trip_through_a_persistence_pickle(tmp_path, cli):
    from gpmcli.checkpoint import load_checkpoint

    net = _small_net()
    (tmp_path / "net.pkl").write_bytes(persistence_pickle(net, INIT, f"raise SystemExit('{SRC_MARK}')\n"))
    code, _, err = cli("-q", "convert", tmp_path / "net.pkl", "--from", "edm-pkl", "-o", tmp_path / "ck")
    assert code == 0, err
    comp = load_checkpoint(tmp_path / "ck")
    x, sigma = torch.randn(3, 3, 16, 16), torch.tensor([0.01, 1.0, 60.0])
    with torch.no_grad():
        assert torch.equal(comp.module(x, sigma), net(x, sigma))
    cfg = comp.config
    assert cfg["arch"]["kwargs"]["precond"] == "vp" and cfg["parameterization"]["type"] == "x0"
    assert cfg["provenance"]["module_source_executed"] is False
    # the denoiser gpm samples with is D(x; sigma) itself
    from gpmcli.fields.score import denoiser_from_component

    with torch.no_grad():
        assert torch.equal(denoiser_from_component(comp)(x, sigma), net(x, sigma))
    code, _, err = cli("-q", "sample", "--model", "edm", "--checkpoint", tmp_path / "ck", "-n", 2, "--steps", 3,
                       "--format", "npz", "-o", tmp_path / "out")
    assert code == 0, err


def test_record_whose_source_would_create_a_file_never_runs(tmp_path, cli):
    marker = tmp_path / "pwned"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nclass VPPrecond: pass\n"
    (tmp_path / "evil.pkl").write_bytes(persistence_pickle(_small_net(), INIT, src))
    code, _, err = cli("-q", "convert", tmp_path / "evil.pkl", "--from", "edm-pkl", "-o", tmp_path / "ck")
    assert not marker.exists()
    assert code == 0, err  # converted from the data alone


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_pickle_that_calls_anything_else_is_refused(tmp_path, cli):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"ema": _Evil(marker)}))
    code, _, err = cli("convert", tmp_path / "evil.pkl", "--from", "edm-pkl", "-o", tmp_path / "ck")
    assert code == 5 and "system" in err
    assert not marker.exists() and not (tmp_path / "ck").exists()


def test_unknown_network_class_and_garbage_are_usage_errors(tmp_path, cli):
    (tmp_path / "x.pkl").write_bytes(persistence_pickle(_small_net(), INIT, "", class_name="SomethingElse"))
    code, _, err = cli("convert", tmp_path / "x.pkl", "--from", "edm-pkl", "-o", tmp_path / "a")
    assert code == 2 and "SomethingElse" in err
    (tmp_path / "y.pkl").write_bytes(b"not a pickle at all")
    code, _, err = cli("convert", tmp_path / "y.pkl", "--from", "edm-pkl", "-o", tmp_path / "b")
    assert code == 2 and "y.pkl" in err


def test_edm_bundle_pulls_converts_and_samples_every_kind(hub_server, cli, tmp_path, monkeypatch):
    """The registry's edm-cifar10-32x32-uncond-vp, its URL sent (GPM_MIRROR) to a stand-in server holding a
    reduced replica: download, convert once (cached), sample with each of its kinds."""
    import json

    import numpy as np

    from gpmcli.registry import Registry

    spec = Registry.load().bundles["edm-cifar10-32x32-uncond-vp"]
    url = spec.components["score"].ref[4:]
    base, name = url.rsplit("/", 1)
    net = _small_net()
    hub_server.add_revision("nvlabs/edm", {name: persistence_pickle(net, INIT, f"raise SystemExit('{SRC_MARK}')")})
    monkeypatch.setenv("GPM_MIRROR", f"{base}/={hub_server.url}/nvlabs/edm/resolve/main/")
    monkeypatch.setenv("GPM_CACHE", str(tmp_path / "gpm"))
    code, out, err = cli("models", "pull", "edm-cifar10-32x32-uncond-vp", "--json")
    assert code == 0, err
    rec = json.loads(out)[0]
    assert rec["resolved"]["url"] == url and len(rec["resolved"]["sha256"]) == 64
    fast = {"edm": ["--steps", 3], "pc": ["--steps", 3], "ode": ["--rtol", 0.1, "--atol", 0.1],
            "langevin": ["--steps", 2, "--corrector-steps", 1]}
    for kind in spec.info["kinds"]:
        code, _, err = cli("-q", "sample", "--model", kind, "-c", "edm-cifar10-32x32-uncond-vp", "-n", 2,
                           *fast[kind], "--format", "npz", "-o", tmp_path / kind)
        assert code == 0, f"{kind}: {err}"
        x = np.load(tmp_path / kind / "samples.npz")["samples"]
        assert x.shape == (2, 3, 16, 16) and np.isfinite(x).all()
        run = json.loads((tmp_path / kind / "run.json").read_text())
        assert run["components"]["score"]["resolved"]["sha256"] == rec["resolved"]["sha256"]
    assert len([p for m, p in hub_server.requests if m == "GET" and p.endswith(".pkl")]) == 1  # downloaded once
