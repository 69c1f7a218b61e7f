"""The counter-based noise engine (Philox4x32-10 in tensor operations) that BatchNoise uses on CUDA, run here on the
CPU: the generator's published known-answer vectors, per-sample streams independent of the batch, and the laws of
the numbers it makes."""

import math

import pytest
import torch

from gpmcli.noise import BatchNoise, philox4x32

M = 0xFFFFFFFF


@pytest.mark.parametrize("counter,key,expected", [
    # Random123's kat_vectors for philox4x32 with 10 rounds
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M, M, M, M), (M, M), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_known_answers(counter, key, expected):
    t = [torch.tensor(v, dtype=torch.int64) for v in counter]
    k = [torch.tensor(v, dtype=torch.int64) for v in key]
    assert tuple(int(o) for o in philox4x32(t, k)) == expected


def test_rows_are_functions_of_seed_index_and_draw_only():
    """Interleaved normal and uniform draws of odd sizes: any subset of the samples, in any order, in any batch,
    draws the same numbers as the full batch; other seeds and other draws differ."""
    def draws(noise):
        return [noise.randn(1, 5, 5), noise.rand(3), noise.randn(7), noise.rand()]

    full = draws(BatchNoise(11, range(10), engine="philox"))
    part = draws(BatchNoise(11, [7, 2, 9], engine="philox"))
    for f, p in zip(full, part):
        assert torch.equal(f[[7, 2, 9]], p)
    other = BatchNoise(12, range(10), engine="philox").randn(1, 5, 5)
    assert not torch.allclose(other, full[0])
    assert not torch.allclose(full[2][:, :7], full[0].reshape(10, -1)[:, :7])  # a new draw is new numbers


def test_subset_view_advances_only_its_rows():
    a = BatchNoise(5, range(6), engine="philox")
    a.subset([1, 4]).randn(8)  # rows 1 and 4 make one extra draw
    nxt = a.randn(8)
    fresh = BatchNoise(5, range(6), engine="philox")
    first, second = fresh.randn(8), fresh.randn(8)
    assert torch.equal(nxt[[0, 2, 3, 5]], first[[0, 2, 3, 5]])
    assert torch.equal(nxt[[1, 4]], second[[1, 4]])


def test_normals_and_uniforms_have_the_right_laws():
    from scipy import stats

    noise = BatchNoise(0, range(64), engine="philox")
    z = noise.randn(4096).double()
    flat = z.flatten().numpy()
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    n = flat.size
    assert abs(flat.mean()) < 5 / math.sqrt(n) and abs(flat.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs((flat**4).mean() - 3) < 5 * math.sqrt(96 / n)
    # no correlation between neighbouring samples, neighbouring elements or the two halves of a Box-Muller pair
    for a, b in ((z[:-1], z[1:]), (z[:, :-1], z[:, 1:]), (z[:, 0::2], z[:, 1::2])):
        r = float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
        assert abs(r) < 5 / math.sqrt(a.numel())
    u = noise.rand(4096).double().flatten().numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3 and 0 < u.min() and u.max() < 1
    nxt = noise.randn(4096).double()  # the next draw is independent of the previous one
    r = float(torch.corrcoef(torch.stack([z.flatten(), nxt.flatten()]))[0, 1])
    assert abs(r) < 5 / math.sqrt(z.numel())


def test_engine_defaults_and_a_sampler_is_batch_invariant_with_it():
    """CPU keeps one generator per sample (its streams are unchanged); CUDA uses Philox. A MALA DDLS chain (normal
    and uniform draws every step) gives the same samples in one batch or two with the Philox engine."""
    assert BatchNoise(0, range(2)).engine == "generator"
    if torch.cuda.is_available():
        assert BatchNoise(0, range(2), "cuda").engine == "philox"
    from test_ddls import build, bundle

    s = build(bundle(), {"ddls_step": 0.3, "ddls_steps": 20, "mala": True})
    full = s(BatchNoise(3, range(9), engine="philox")).x
    parts = torch.cat([s(BatchNoise(3, idx, engine="philox")).x for idx in ([0, 1, 2, 3], [4, 5, 6, 7, 8])])
    torch.testing.assert_close(full, parts, rtol=0, atol=1e-5)
    gen = s(BatchNoise(3, range(9))).x
    assert not torch.allclose(full, gen)  # the engines draw different numbers
    with pytest.raises(ValueError):
        BatchNoise(0, range(2), engine="mt")
