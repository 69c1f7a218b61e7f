"""``toy:NAME`` / ``toy:FILE.json``: an analytic Gaussian-mixture target with exact scores (nothing to download)."""

from __future__ import annotations

from typing import Any

from gpmcli.errors import UsageError
from gpmcli.refs.base import Ref


class ToyRef(Ref):
    kind = source = "toy"

    @classmethod
    def parse(cls, text: str, **kw: Any) -> "ToyRef":
        if len(text) == 4:
            raise UsageError("toy: needs a name or a .json file, e.g. toy:pentagon")
        return cls(text, text, **kw)

    def _mixture(self):
        from gpmcli.fields.toy import load_toy

        return load_toy(self.value[4:])

    def _load(self, *, device, trust_pickle: bool):
        from gpmcli.fields.base import Component
        from gpmcli.fields.toy import toy_config

        gm = self._mixture()
        return Component(role="score", module=gm.to(device), config=toy_config(gm, self.value), ref=self.value)

    def _verify(self) -> dict[str, Any]:
        return {"status": "ok", "detail": "analytic target"}

    def info(self, *, trust_pickle: bool = False) -> dict[str, Any]:
        from gpmcli.fields.toy import toy_config

        gm = self._mixture()
        return {"kind": "toy", "ref": self.value, "role": "score", "config": toy_config(gm, self.value),
                "components": int(gm.weights.numel()), "dim": int(gm.means.shape[-1]), "parameters": 0}
