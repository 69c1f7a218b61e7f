"""The shipped registry stays loadable and reproducible (every bundle added to it is checked here)."""

from __future__ import annotations

import pytest

from gpmcli.checkpoint import sha256_file
from gpmcli.errors import UsageError
from gpmcli.registry import Registry


def test_shipped_registry_is_pinned_and_complete():
    reg = Registry.load()
    assert reg.bundles, "checkpoints/registry.toml lists no bundle"
    assert reg.problems() == []
    for name, spec in reg.bundles.items():
        for role, c in spec.components.items():
            if c.sha256 and not c.ref.startswith(("hf:", "toy:")):
                assert sha256_file(reg.root / c.ref / "model.safetensors") == c.sha256, f"{name}.{role}"


def test_registry_problems_and_bad_entries(tmp_path):
    (tmp_path / "registry.toml").write_text(
        '[defaults]\nedm = "nope"\n\n[bundles.a]\nscore = "hf:org/x"\ndiscriminator = "missing-dir"\n')
    probs = Registry.load(tmp_path).problems()
    assert any("names no bundle" in p for p in probs)
    assert any("no pinned @REV" in p for p in probs) and any("no sha256" in p for p in probs)
    assert any("missing-dir" in p for p in probs)
    (tmp_path / "registry.toml").write_text("[bundles.a]\nscore = 3\n")
    with pytest.raises(UsageError, match="bundles.a.score"):
        Registry.load(tmp_path)
    (tmp_path / "registry.toml").write_text("[bundles.a\n")
    with pytest.raises(UsageError, match="invalid TOML"):
        Registry.load(tmp_path)


@pytest.mark.parametrize("name", sorted(Registry.load().bundles))
def test_models_info_describes_every_shipped_bundle(cli, name):
    """Each local component is described from its own directory (a component path spelled like its bundle name used to
    recurse), with the sha256 the registry pins where it pins one."""
    import json

    code, out, err = cli("models", "info", name, "--json")
    assert code == 0, err
    comps = json.loads(out)["components"]
    spec = Registry.load().bundles[name]
    assert set(comps) == set(spec.components)
    for role, c in comps.items():
        assert "error" not in c, c
        if not c["ref"].startswith("toy:"):
            assert c["role"] == role, c
        if spec.components[role].sha256 and not c["ref"].startswith(("toy:", "hf:")):
            assert sha256_file(f"{c['path']}/model.safetensors") == spec.components[role].sha256
