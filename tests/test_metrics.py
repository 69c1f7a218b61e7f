"""Fréchet distance, KID and precision/recall/density/coverage against closed forms and independent references."""

import warnings

import numpy as np
import pytest
import torch

from gpmcli.metrics.frechet import MetricWarning, feature_moments, frechet_distance


def _rand_orth(rng, d, k=6):
    """A random orthogonal matrix as a product of k Householder reflections (O(k d^2), cheap at d = 2048)."""
    q = np.eye(d)
    for _ in range(k):
        v = rng.standard_normal(d)
        v /= np.linalg.norm(v)
        q -= 2.0 * np.outer(q @ v, v)
    return q


@pytest.mark.parametrize("d", [64, 2048])
def test_frechet_commuting_closed_form(d):
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: tr sqrt(S1 S2) = sum sqrt(a b)
    rng = np.random.default_rng(d)
    q = _rand_orth(rng, d)
    a, b = rng.uniform(0.01, 3.0, d), rng.uniform(0.01, 3.0, d)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert abs(fd - exact) / exact <= 1e-6


@pytest.mark.parametrize("d", [64, 2048])
def test_frechet_noncommuting_closed_form(d):
    # S2 = A S1 A with A symmetric PD: sqrt(S1) S2 sqrt(S1) = (sqrt(S1) A sqrt(S1))^2, so tr sqrt(.) = tr(A S1);
    # S1 and A have different random eigenbases, so S1 and S2 do not commute
    rng = np.random.default_rng(d + 1)
    q1, q2 = _rand_orth(rng, d), _rand_orth(rng, d)
    s1 = (q1 * rng.uniform(0.01, 3.0, d)) @ q1.T
    a = (q2 * rng.uniform(0.3, 2.0, d)) @ q2.T
    s2 = a @ s1 @ a
    if d <= 64:
        assert np.abs(s1 @ s2 - s2 @ s1).max() > 1e-2
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    exact = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(a * s1)
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert abs(fd - exact) / exact <= 1e-6


def test_frechet_matches_scipy_sqrtm_and_symmetry():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((500, 32)), rng.standard_normal((400, 32)) @ rng.standard_normal((32, 32)) * 0.3 + 1
    m1, s1 = feature_moments(x)
    m2, s2 = feature_moments(y)
    assert np.allclose(s1, np.cov(x, rowvar=False)) and np.allclose(m2, y.mean(0))
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(m2, s2, m1, s1) == pytest.approx(ref, rel=1e-9)
    assert abs(frechet_distance(m1, s1, m1, s1)) < 1e-9


def test_frechet_warnings_and_errors():
    from gpmcli.errors import NumericalError, UsageError

    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 16))  # N <= d: singular covariance
    m, s = feature_moments(x)
    with pytest.warns(MetricWarning, match="N = 10 <= feature dimension 16"):
        frechet_distance(m, s, m + 1, np.eye(16), n1=10, n2=1000)
    with pytest.warns(MetricWarning, match="covariance 1 is rank-deficient"):
        frechet_distance(m, s, m + 1, np.eye(16))
    with pytest.warns(MetricWarning, match="covariance 2 is rank-deficient"):
        frechet_distance(m, np.eye(16), m + 1, s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(np.zeros(3), np.eye(3), np.ones(3), 2 * np.eye(3), n1=100, n2=100)
    with pytest.raises(UsageError, match="feature sizes differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(NumericalError):
        frechet_distance(np.zeros(3), np.eye(3) * np.nan, np.zeros(3), np.eye(3))


# ---- KID ----

def _mmd2_numpy(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


def test_kid_matches_numpy_and_torchmetrics():
    from torchmetrics.image.kid import poly_mmd

    from gpmcli.metrics.kid import kid, mmd2_unbiased

    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 64)) * 0.5 + 0.2
    y = rng.standard_normal((250, 64)) * 0.6 + 0.25
    ref = _mmd2_numpy(x, y)
    assert mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(ref, rel=1e-10, abs=1e-14)
    xs, ys = x[:200], y[:200]
    tm = float(poly_mmd(torch.from_numpy(xs), torch.from_numpy(ys)))
    assert mmd2_unbiased(torch.from_numpy(xs), torch.from_numpy(ys)) == pytest.approx(tm, rel=1e-9, abs=1e-14)
    # subsets: reproduce the subset draws with the documented rng, then compare mean and (population) std
    mean, std = kid(x, y, subsets=7, subset_size=100, seed=5)
    rs = np.random.default_rng(5)
    vals = []
    for _ in range(7):
        ix, iy = rs.choice(300, 100, replace=False), rs.choice(250, 100, replace=False)
        vals.append(_mmd2_numpy(x[ix], y[iy]))
    assert mean == pytest.approx(np.mean(vals), rel=1e-9)
    assert std == pytest.approx(np.std(vals), rel=1e-9)
    # float32 features: same value to float32 dot-product accuracy
    m32, _ = kid(x.astype(np.float32), y.astype(np.float32), subsets=7, subset_size=100, seed=5)
    assert m32 == pytest.approx(mean, abs=1e-5)
    # same distribution: KID near 0, different: clearly positive
    z = rng.standard_normal((300, 64)) * 0.5 + 0.2
    assert abs(kid(x, z, subsets=10, subset_size=100)[0]) < 0.02 < kid(x, y + 1.0, subsets=10, subset_size=100)[0]
    with pytest.warns(MetricWarning, match="subset size reduced"):
        kid(x[:50], y, subsets=2, subset_size=1000)


# ---- precision / recall / density / coverage ----

def test_prdc_matches_prdc_package():
    import prdc as prdc_ref

    from gpmcli.metrics.knn import prdc

    rng = np.random.default_rng(3)
    real = rng.standard_normal((400, 16)).astype(np.float32)
    fake = (rng.standard_normal((300, 16)) * 1.3 + 0.4).astype(np.float32)
    got = prdc(real.astype(np.float64), fake.astype(np.float64), chunk=128)
    ref3 = prdc_ref.compute_prdc(real.astype(np.float64), fake.astype(np.float64), nearest_k=3)
    ref5 = prdc_ref.compute_prdc(real.astype(np.float64), fake.astype(np.float64), nearest_k=5)
    assert got["precision"] == pytest.approx(ref3["precision"], abs=1e-12)
    assert got["recall"] == pytest.approx(ref3["recall"], abs=1e-12)
    assert got["density"] == pytest.approx(ref5["density"], abs=1e-12)
    assert got["coverage"] == pytest.approx(ref5["coverage"], abs=1e-12)
    # same with one custom k for all four (prdc package convention), and float32 inputs
    got3 = prdc(real, fake, k_pr=3, k_dc=3, chunk=1000)
    for k in ("precision", "recall", "density", "coverage"):
        assert got3[k] == pytest.approx(ref3[k], abs=2 / 300)


def test_prdc_direct_definition_small():
    """Brute-force numpy definition on a tiny set, including unequal set sizes."""
    from gpmcli.metrics.knn import prdc

    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((40, 3)), rng.standard_normal((25, 3)) + 0.5
    dist = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))  # noqa: E731
    drr, dff, drf = dist(real, real), dist(fake, fake), dist(real, fake)
    rad_r3, rad_r5 = np.sort(drr, 1)[:, 3], np.sort(drr, 1)[:, 5]
    rad_f3 = np.sort(dff, 1)[:, 3]
    prec = np.mean([any(drf[i, j] < rad_r3[i] for i in range(40)) for j in range(25)])
    rec = np.mean([any(drf[i, j] < rad_f3[j] for j in range(25)) for i in range(40)])
    dens = np.mean([sum(drf[i, j] < rad_r5[i] for i in range(40)) for j in range(25)]) / 5
    cov = np.mean([min(drf[i]) < rad_r5[i] for i in range(40)])
    got = prdc(real, fake, chunk=7)
    assert (got["precision"], got["recall"]) == pytest.approx((prec, rec), abs=1e-12)
    assert (got["density"], got["coverage"]) == pytest.approx((dens, cov), abs=1e-12)


def test_constant_features_do_not_warn():
    """Dead units (zero variance in both sets) make the covariances singular but do not change the distance."""
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((300, 12)), rng.standard_normal((300, 12)) + 0.3
    x[:, :3] = 0.0
    y[:, :3] = 0.0
    m1, s1 = feature_moments(x)
    m2, s2 = feature_moments(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fd = frechet_distance(m1, s1, m2, s2, n1=300, n2=300)
    full = frechet_distance(m1[3:], s1[3:, 3:], m2[3:], s2[3:, 3:])
    assert fd == pytest.approx(full, rel=1e-10)
    x[:, 3] = 0.0  # a unit dead in set 1 only, one dead in set 2 only, one nearly dead in both (LeNet on MNIST)
    y[:, 6] = 0.0
    x[:, 7] *= 1e-4
    y[:, 7] *= 1e-4
    m1, s1 = feature_moments(x)
    m2, s2 = feature_moments(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fd = frechet_distance(m1, s1, m2, s2, n1=300, n2=300)
        assert fd == pytest.approx(frechet_distance(m2, s2, m1, s1, n1=300, n2=300), rel=1e-6)
    from scipy.linalg import LinAlgWarning, sqrtm  # closed form on the same moments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)  # S1 S2 is singular by construction
        ref = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(sqrtm(s1 @ s2).real)
    assert fd == pytest.approx(ref, rel=1e-6)
    y[:, 5] = y[:, 4]  # a genuine deficiency in set 2 is still reported
    m2, s2 = feature_moments(y)
    with pytest.warns(MetricWarning, match="covariance 2 is rank-deficient"):
        frechet_distance(m1, s1, m2, s2, n1=300, n2=300)
