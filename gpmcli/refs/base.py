"""The :class:`Ref` interface every reference form implements (see :mod:`gpmcli.refs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpmcli.errors import DownloadError, IntegrityError, RoleMismatchError, UsageError


class Ref:
    """A parsed reference.

    ``text`` is what was written, ``value`` its canonical form (``hf:…`` for a Hub reference written without the
    prefix). A registry component is ``pinned``: it may carry the ``sha256`` of its weights, the ``convert`` format
    of a foreign source and the ``base`` folder its relative paths start from; its records name it as written.

    Subclasses set :attr:`kind` and :attr:`source` and implement ``_load``, ``_verify``, ``_pull`` and ``info``."""

    kind = ""  # bundle | hf | toy | path | url
    source = ""  # what `gpm models list|pull|verify` records call it: hf | url | toy | local

    def __init__(self, text: str, value: str | None = None, *, sha256: str | None = None,
                 convert: str | None = None, base: Path | None = None, pinned: bool = False, registry=None):
        self.text = text
        self.value = text if value is None else value
        self.sha256 = sha256
        self.convert = convert
        self.base = base
        self.pinned = pinned
        self.registry = registry

    @classmethod
    def parse(cls, text: str, **kw: Any) -> "Ref":
        """Check ``text`` (which starts with this class's scheme) and build the reference; raise UsageError if bad."""
        return cls(text, text, **kw)

    @property
    def name(self) -> str:
        """How records and loaded components name it: as written in the registry, else canonical."""
        return self.text if self.pinned else self.value

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), self.value))

    # ---- what every command uses ---------------------------------------------------------------------------------
    def load(self, *, device="cpu", trust_pickle: bool = False):
        """The networks it names as a :class:`~gpmcli.fields.base.Bundle` (a bundle of one for a single network)."""
        from gpmcli.fields.base import Bundle

        comp = self.component(None, device=device, trust_pickle=trust_pickle)
        return Bundle(self.text, {comp.role: comp})

    def component(self, role: str | None = None, *, device="cpu", trust_pickle: bool = False):
        """The one network of role ``role`` (any role when None) it names."""
        comp = self._load(device=device, trust_pickle=trust_pickle)
        check_role(comp, role, self.name)
        return comp

    def verify(self) -> list[dict[str, Any]]:
        """Offline integrity check: one record per network, ``status`` ``ok``, ``mismatch`` or ``missing``."""
        rec: dict[str, Any] = {"role": None, "ref": self.name, "pinned_sha256": self.sha256}
        try:
            rec.update(self._verify())
        except IntegrityError as e:
            rec.update(status="mismatch", detail=str(e))
        except DownloadError as e:
            rec.update(status="missing", detail=str(e))
        except UsageError as e:
            rec.update(status="mismatch", detail=str(e))
        return [rec]

    def pull(self, *, force: bool = False) -> list[dict[str, Any]]:
        """Download (sha256-verified) what it needs; one record per network or repository."""
        return [{"role": None, "ref": self.name, "source": self.source, **self._pull(force)}]

    def info(self, *, trust_pickle: bool = False) -> dict[str, Any]:
        """What it holds (config, tensors, parameter count), downloading it if needed."""
        raise NotImplementedError

    def cached_info(self) -> dict[str, Any]:
        """:meth:`info` without network access (``gpm models info BUNDLE`` lists its components this way)."""
        return self.info()

    def available(self, cache_dir=None) -> bool:
        """Whether it can be loaded without a download (``cache_dir``: the Hub cache, if not the default)."""
        return True

    # ---- per form ------------------------------------------------------------------------------------------------
    def _load(self, *, device, trust_pickle: bool):
        raise NotImplementedError

    def _verify(self) -> dict[str, Any]:
        raise NotImplementedError

    def _pull(self, force: bool) -> dict[str, Any]:
        return {}

    # ---- the parts of the old interface tests and callers use ----------------------------------------------------
    @property
    def hf(self):
        raise ValueError(f"{self.text!r} is a {self.kind} reference, not a Hub one")

    @property
    def path(self) -> Path:
        raise ValueError(f"{self.text!r} is a {self.kind} reference, not a path")


def check_role(comp, role: str | None, ref: str, verb: str = "is") -> None:
    """Refuse a component whose role is not ``role`` (a ``classifier`` serves where ``features`` are needed)."""
    if role is not None and comp.role != role and not (role == "features" and comp.role == "classifier"):
        raise RoleMismatchError(f"{ref} {verb} a {comp.role} checkpoint, but a {role} is needed here", ref=ref,
                                role=comp.role, needed=role)
