"""Adding a sampler kind is one new file plus a registry line (docs/samplers.md, "How to add a sampler kind").

The file below is a complete kind, written the way docs/samplers.md describes: a loop function, a ``build`` that
resolves the options the kind declares, one ``register_kind`` line. It is dropped into a folder the sampler package
searches, a temporary registry names its default bundle, and the real CLI samples it. The kind denoises a prior draw
once (``x = D(sigma z, sigma)``); on a Gaussian target N(mu, s^2 I) the exact denoiser gives
``x ~ N((1 - k) mu, (k sigma)^2 I)`` with ``k = s^2 / (s^2 + sigma^2)``, which the samples must match.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

import gpmcli.samplers as samplers

KIND_FILE = '''
"""``--model tweedie-once``: one Tweedie denoising step from the prior (a toy kind)."""
import torch

from gpmcli.samplers import SampleResult, SamplerSpec, register_kind, uses
from gpmcli.samplers.scorekit import ScoreSamplerBase, normal


def tweedie_once(denoiser, x, sigma):
    """The loop: x = D(x, sigma)."""
    return denoiser.denoise(x, sigma).to(x.dtype)


class TweedieOnce(ScoreSamplerBase):
    def __init__(self, bundle, params):
        super().__init__(bundle, params)
        self.resolved = SPEC.resolve(params)
        self.sigma = self.resolved["sigma_max"]

    def __call__(self, noise, *, trajectory=False):
        x = noise.randn(self.data_shape) * self.sigma
        with torch.no_grad():
            x = tweedie_once(self.den, x, self.sigma)
        return SampleResult(self.finish(x), 1, [x] if trajectory else None)


SPEC = register_kind(SamplerSpec("tweedie-once", ("score",), TweedieOnce, "One Tweedie step (toy)",
                                 uses(sigma_max=2.0)))
'''

MU, S = [1.5, -2.0], 0.5


@pytest.fixture
def new_kind(tmp_path, monkeypatch):
    kinds = tmp_path / "kinds"
    kinds.mkdir()
    (kinds / "tweedie_once.py").write_text(KIND_FILE)  # the one new file
    samplers.get_kind("edm")  # the package's own kinds registered first, so the copy below holds them all
    monkeypatch.setattr(samplers, "__path__", [*samplers.__path__, str(kinds)])
    monkeypatch.setattr(samplers, "KINDS", dict(samplers.KINDS))
    target = tmp_path / "gauss.json"
    target.write_text(json.dumps({"weights": [1.0], "means": [MU], "covs": [[[S**2, 0.0], [0.0, S**2]]]}))
    (tmp_path / "registry.toml").write_text(  # the registry line (plus the bundle it names)
        f'[defaults]\ntweedie-once = "gauss"\n\n[bundles.gauss]\nscore = "toy:{target.as_posix()}"\n')
    monkeypatch.setenv("GPM_CHECKPOINTS", str(tmp_path))
    yield tmp_path
    sys.modules.pop("gpmcli.samplers.tweedie_once", None)


@pytest.mark.parametrize("sigma", [None, 3.0])
def test_a_kind_added_as_one_file_samples_through_the_cli(cli, new_kind, sigma):
    out = new_kind / f"out{sigma}"
    n = 4000
    args = ["sample", "--model", "tweedie-once", "-n", n, "-b", 1000, "--format", "npz", "-o", out]
    code, _, err = cli(*args, *(["--sigma-max", sigma] if sigma else []))
    assert code == 0, err
    x = np.load(out / "samples.npz")["samples"].reshape(n, 2).astype(np.float64)
    sig = sigma or 2.0  # the kind's declared default
    k = S**2 / (S**2 + sig**2)
    tol_mean = 5 * k * sig / math.sqrt(n)
    np.testing.assert_allclose(x.mean(0), (1 - k) * np.array(MU), atol=tol_mean)
    np.testing.assert_allclose(x.std(0), k * sig, rtol=0.06)
    info = json.loads((out / "run.json").read_text())
    assert info["params"] == {"sigma_max": sig} and info["nfe_per_sample"] == 1


def test_the_new_kinds_declarations_drive_its_checks(cli, new_kind):
    out = new_kind / "refused"
    code, _, err = cli("sample", "--model", "tweedie-once", "-n", 2, "--steps", 5, "-o", out)
    assert code == 2 and "does not use --steps" in err and not out.exists()
    code, _, err = cli("sample", "--model", "tweedie-once", "-n", 2, "--sigma-max", "-1", "-o", out)
    assert code == 2 and "--sigma-max must be > 0" in err and not out.exists()
    with open(new_kind / "registry.toml", "a") as f:
        f.write('params.tweedie-once = { sigma_max = 1.0, rho = 7.0 }\n')
    code, _, err = cli("sample", "--model", "tweedie-once", "-n", 2, "-o", out)
    assert code == 2 and "params.tweedie-once sets rho" in err and not out.exists()


def test_sample_flags_and_checks_come_from_the_declarations(cli):
    """Every declared command-line option is a `gpm sample` flag with its declared help; every kind reads only
    declared options; values are checked by type, choice, range and finiteness (one UsageError line each)."""
    from gpmcli.errors import UsageError
    from gpmcli.samplers import ALL_KINDS, check_params, get_kind
    from gpmcli.samplers.options import OPTIONS, cli_options

    code, out, _ = cli("sample", "--help")
    assert code == 0
    text = " ".join(out.replace("\u2502", " ").split())  # the help panel without its box borders
    for o in cli_options():
        assert o.flag in out and (o.help or "")[:12] in text
    assert "--variance" not in out  # declared for registry bundles only
    for kind in ALL_KINDS:
        spec = get_kind(kind)
        assert spec.options is not None and all(OPTIONS[o.name].help == o.help for o in spec.options)
    assert check_params("edm", {"steps": 7, "rho": 3, "churn": None}) == {"steps": 7, "rho": 3.0}
    for kind, params, msg in [("edm", {"steps": 2.5}, "--steps takes an integer"),
                              ("edm", {"rho": float("nan")}, "--rho must be a finite number"),
                              ("edm", {"solver": "rk4"}, "--solver must be heun or euler"),
                              ("pc", {"sde": "foo"}, "--sde must be one of ve, vp, subvp"),
                              ("ddls", {"mala": "yes"}, "--mala takes true or false"),
                              ("ddls", {"ddls_steps": -1}, "--ddls-steps must be >= 0"),
                              ("gan", {"steps": 3}, "--model gan does not use --steps")]:
        with pytest.raises(UsageError, match=msg):
            check_params(kind, params)
    with pytest.raises(UsageError, match=r"bundle 'b': params.pc: --snr must be > 0"):
        check_params("pc", {"snr": 0}, "bundle 'b'")
