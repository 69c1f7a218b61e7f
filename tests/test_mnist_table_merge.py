"""scripts/mnist_table.py --merge: rows measured on different machines become one table in the table's row order."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import mnist_table  # noqa: E402


def _row(label, kind, fd, n=100, device="cpu (2 threads)", **extra):
    return {"label": label, "kind": kind, "bundle": label.split()[-1], "params": extra.pop("params", {}), "n": n,
            "nfe": extra.pop("nfe", 1), "wall_seconds": 1.0, "device": device, "mean_max_prob": 0.9,
            "classes_present": 10, "class_histogram": [10] * 10, "fd_lenet": fd, **extra}


def test_merge_orders_rows_later_files_win_and_mixed_n_is_refused(tmp_path, capsys):
    gpu = [_row("diffflow lambda=1 mnist-diffflow", "diffflow", 24.0, device="NVIDIA H200", params={"lambda": 1.0},
                nfe=64),
           _row("edm mnist-edm", "edm", 16.0, device="NVIDIA H200", nfe=35),
           _row("gan mnist-gan", "gan", 80.0)]
    cpu = [_row("gan mnist-gan", "gan", 74.0), {"label": "ddls mnist-x", "kind": "ddls", "skipped": "not registered"}]
    (tmp_path / "gpu.json").write_text(json.dumps(gpu))
    (tmp_path / "cpu.json").write_text(json.dumps(cpu))
    out = tmp_path / "all.json"
    assert mnist_table.main(["--merge", str(tmp_path / "gpu.json"), str(tmp_path / "cpu.json"), "--json", str(out),
                             "--md", str(tmp_path / "all.md"), "--png", str(tmp_path / "all.png")]) == 0
    rows = json.loads(out.read_text())
    order = [lab for lab, *_ in mnist_table.rows()]
    labels = [r["label"] for r in rows]
    assert labels == sorted(labels, key=order.index)  # the table's order, not the files'
    assert labels[0] == "edm mnist-edm"
    assert next(r for r in rows if r["label"] == "gan mnist-gan")["fd_lenet"] == 74.0  # the later file wins
    md = (tmp_path / "all.md").read_text()
    assert "(NVIDIA H200)" in md and "(cpu (2 threads))" in md and "N = 100" in md
    assert (tmp_path / "all.png").stat().st_size > 0
    (tmp_path / "other.json").write_text(json.dumps([_row("edm mnist-edm", "edm", 15.0, n=500)]))
    assert mnist_table.main(["--merge", str(tmp_path / "gpu.json"), str(tmp_path / "other.json")]) == 2
    assert "mix sample counts" in capsys.readouterr().err


if __name__ == "__main__":
    pytest.main([__file__])


def test_lenet_frame_undoes_gpms_mnist_padding_and_merge_refuses_mixed_frames(tmp_path):
    """gpm's MNIST is the 28x28 digits padded by 2 (mnist_to_gpm); the LeNet protocol crops 32x32 samples back to
    exactly those digits (28x28 ones pass unchanged), and a table never mixes cropped and uncropped rows."""
    import numpy as np
    import torch

    import eval_mnist_lenet
    from gpmcli.data import mnist_to_gpm

    digits = np.random.default_rng(0).integers(0, 256, size=(5, 1, 28, 28), dtype=np.uint8)
    padded = mnist_to_gpm(digits)
    assert padded.shape == (5, 1, 32, 32)
    back = eval_mnist_lenet.lenet_frame(padded, crop=True)
    torch.testing.assert_close(back, torch.from_numpy(digits).float() / 127.5 - 1.0)
    assert eval_mnist_lenet.lenet_frame(padded, crop=False) is padded
    assert eval_mnist_lenet.lenet_frame(back, crop=True) is back
    rows = [_row("edm mnist-edm", "edm", 16.0, frame="32px cropped to 28"), _row("gan mnist-gan", "gan", 70.0)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    assert mnist_table.main(["--merge", str(tmp_path / "a.json")]) == 2


def test_rows_of_28px_bundles_join_a_table_of_either_frame(tmp_path):
    """Only 32x32 samples have two LeNet frames: a 28x28 pair's row (here one written before frames were recorded,
    whose shape comes from the bundle's config) merges with cropped and with whole-frame rows alike."""
    import eval_mnist_lenet

    assert eval_mnist_lenet.frame_label((28, 28), crop=True) == eval_mnist_lenet.frame_label((28, 28), crop=False)
    assert mnist_table.frame_of(_row("gan mnist-mlp-gan", "gan", 120.0)) == "28x28 native"
    assert mnist_table.frame_of(_row("gan mnist-gan", "gan", 70.0)) == "as sampled"  # 32x32, written before crops
    for edm_frame in ("32px cropped to 28", "as sampled"):
        rows = [_row("edm mnist-edm", "edm", 16.0, frame=edm_frame),
                _row("gan mnist-mlp-gan", "gan", 120.0, frame="32px cropped to 28", sample_shape=[1, 28, 28]),
                _row("gan mnist-wgangp", "gan", 100.0)]
        (tmp_path / "a.json").write_text(json.dumps(rows))
        assert mnist_table.main(["--merge", str(tmp_path / "a.json"), "--json", str(tmp_path / "b.json")]) == 0
        assert len(json.loads((tmp_path / "b.json").read_text())) == 3


def test_only_keeps_matching_rows_in_the_order_of_the_words():
    table = mnist_table.rows()
    picked = [row[0] for row in mnist_table.selected(table, ["diffflow", "pc", "mnist-wgangp"])]
    assert picked[:5] == [f"diffflow lambda={lam:g} mnist-diffflow" for lam in mnist_table.LAMBDAS]
    assert picked[5] == "pc mnist-edm"
    assert picked[6:] == ["gan mnist-wgangp", "ddls mnist-wgangp (its own discriminator)"]  # table order within a word
    assert [row[0] for row in mnist_table.selected(table, None)] == [row[0] for row in table]
    assert mnist_table.selected(table, ["nothing"]) == []
