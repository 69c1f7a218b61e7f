"""One parser for every form a checkpoint reference takes on the command line.

``parse_ref(text)`` sorts a reference into one of four kinds, in this order:

- ``toy``: ``toy:NAME`` or ``toy:FILE.json`` (an analytic target);
- ``hf``: ``hf:ORG/NAME[@REV][/SUBFOLDER]``;
- ``bundle``: a name in ``checkpoints/registry.toml``;
- ``path``: an existing file or folder;
- ``hf`` again: ``ORG/NAME[@REV][/SUBFOLDER]`` without the prefix, when it is none of the above.

Anything else is a usage error (exit 2) that lists the accepted forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpmcli.errors import UsageError

KINDS = ("bundle", "hf", "toy", "path")
FORMS = "a registry bundle, an existing file or folder, [hf:]ORG/NAME[@REV][/SUBFOLDER] or toy:NAME"


@dataclass(frozen=True)
class Ref:
    """A parsed reference. ``value`` is the bundle name, the canonical ``hf:…`` string, the ``toy:…`` string or the
    path; ``text`` is what the user wrote."""

    kind: str
    value: str
    text: str

    @property
    def hf(self):
        """The :class:`gpmcli.hub.HfRef` of an ``hf`` reference."""
        from gpmcli.hub import parse_hf_ref

        if self.kind != "hf":
            raise ValueError(f"{self.text!r} is a {self.kind} reference, not a Hub one")
        return parse_hf_ref(self.value)

    @property
    def path(self) -> Path:
        if self.kind != "path":
            raise ValueError(f"{self.text!r} is a {self.kind} reference, not a path")
        return Path(self.value)

    def __str__(self) -> str:
        return self.value


def parse_ref(text: str, *, registry=None) -> Ref:
    """Classify ``text`` (see the module docstring). ``registry`` (a :class:`gpmcli.registry.Registry`) is read from
    ``checkpoints/`` when not given."""
    from gpmcli.hub import parse_hf_ref

    text = str(text).strip()
    if not text:
        raise UsageError(f"empty reference; expected {FORMS}")
    if text.startswith("toy:"):
        if len(text) == 4:
            raise UsageError("toy: needs a name or a .json file, e.g. toy:pentagon")
        return Ref("toy", text, text)
    if text.startswith("hf:"):
        return Ref("hf", str(parse_hf_ref(text)), text)
    if registry is None:
        from gpmcli.registry import Registry

        registry = Registry.load()
    if text in registry.bundles:
        return Ref("bundle", text, text)
    if Path(text).exists():
        return Ref("path", text, text)
    try:
        return Ref("hf", str(parse_hf_ref(text)), text)
    except UsageError:
        pass
    raise UsageError(f"{text!r} is not {FORMS}; `gpm models list` shows the bundles")
