"""``gpm train``: train the networks the samplers need and write them as gpm checkpoints.

Trainer API
-----------
Each role is one module in this package that registers a :class:`RoleSpec` at import time::

    from gpmcli.train import Opt, RoleSpec, register_role
    from gpmcli.train.common import RoleTrainer

    class ScoreTrainer(RoleTrainer):
        role = "score"                                   # the checkpoint role written
        def setup(self): ...                             # build networks and optimisers (self.ctx.adam(...))
        def modules(self): return {"net": self.net}      # every trained network (saved for --resume)
        def optimizers(self): return {"net": self.opt}
        def train_step(self, batch): ...; return {"loss": float}   # one optimiser step on one data batch
        def exports(self): return {"": ("net", config)}  # checkpoints to write: {subdir: (module, config)}

    register_role(RoleSpec("score", ScoreTrainer, "EDM denoiser ...", options=[Opt("arch", str, "auto", "...")]))

Keys are the role names of ``gpm train ROLE``; ``discriminator`` is keyed by its ``--for`` target
(``discriminator:diffflow``, ``discriminator:discr-flow``, ``discriminator:ddls``). Modules are discovered automatically (every module of
this package is imported once), so adding a role is adding a file. A role named in :data:`TRAIN_ROLES` without a
registered module answers "not available yet" (exit 2).

What the common loop (:class:`gpmcli.train.common.Loop`) gives a role through ``self.ctx``
(:class:`~gpmcli.train.common.TrainContext`) and ``self.args`` (its parsed :class:`Opt` values):

- ``ctx.opts``: the common options (steps, batch size, lr, EMA decay, warm-up, seed, device, precision, ...);
- ``ctx.data``: the :class:`gpmcli.data.Dataset` (shape, range, name); the loop passes the step's batch, already on
  ``ctx.device``, to :meth:`RoleTrainer.train_step`;
- ``ctx.autocast()``: wrap network calls in it (``--precision bf16``); keep particles and losses in float32;
- ``ctx.generator(stream)``: a CPU generator owned by the current step: every random draw of a step must come from
  it (``ctx.randn``/``ctx.rand`` move the draw to the device), so a run resumed from ``train_state.pt`` reproduces
  an uninterrupted one exactly;
- ``ctx.adam(params, lr, betas)`` and ``ctx.update(opt, loss)`` (zero_grad, backward, optional clipping, warm-up);
- EMA of every exported network (``--ema``; the checkpoint then holds the EMA weights), periodic checkpoints
  (``--save-every``), ``--resume`` (networks, optimisers, EMA, step and :meth:`RoleTrainer.extra_state` in
  ``train_state.pt``, written with ``torch.save`` of tensors and plain types and read with ``weights_only=True``),
  rich progress through the CLI's callback, and the final checkpoint directory written with
  :func:`gpmcli.checkpoint.save_checkpoint`: the config gets ``data``, ``provenance`` (with the exact training
  ``command``) and ``training`` (steps, wall time, device, batch size, ...), and the model card states them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpmcli.errors import NotAvailableError, UsageError
from gpmcli.opts import Opt  # noqa: F401  (re-exported: role modules declare their options with it)
from gpmcli.plugins import import_all

#: every ``gpm train ROLE`` (registered or not yet available); what a trainer *writes* is a checkpoint role
#: (:data:`gpmcli.checkpoint.ROLES`), a different list: ``gan`` and ``score-gan`` write a generator
TRAIN_ROLES = ("score", "gan", "discriminator", "score-gan")
#: ``gpm train discriminator --for X``
DISCRIMINATOR_TARGETS = ("diffflow", "discr-flow", "ddls")


@dataclass
class RoleSpec:
    key: str
    trainer: type
    help: str
    options: list[Opt] = field(default_factory=list)

    def parse_args(self, extra: list[str]) -> dict[str, Any]:
        """Parse ``--name value`` / ``--name=value`` / ``--flag`` against :attr:`options`."""
        by_flag = {o.flag: o for o in self.options}
        out = {o.name: o.default for o in self.options}
        i = 0
        while i < len(extra):
            tok = extra[i]
            name, _, val = tok.partition("=")
            opt = by_flag.get(name)
            if opt is None:
                known = ", ".join(sorted(by_flag)) or "none"
                raise UsageError(f"gpm train {self.key.replace(':', ' --for ')}: unknown option {tok!r} "
                                 f"(role options: {known})")
            if not val and "=" not in tok:
                if opt.type is bool:
                    out[opt.name] = True
                    i += 1
                    continue
                if i + 1 >= len(extra):
                    raise UsageError(f"{opt.flag} needs a value")
                val = extra[i + 1]
                i += 1
            out[opt.name] = opt.parse(val)
            i += 1
        return out


REGISTRY: dict[str, RoleSpec] = {}


def register_role(spec: RoleSpec) -> RoleSpec:
    if spec.key in REGISTRY and REGISTRY[spec.key].trainer is not spec.trainer:
        raise RuntimeError(f"training role {spec.key!r} registered twice")
    REGISTRY[spec.key] = spec
    return spec


def _import_all() -> None:
    import_all(__name__, __path__, skip=("common", "context", "sigma_bands"))


def role_key(role: str, target: str | None) -> str:
    """``score`` / ``gan`` / ``score-gan`` / ``discriminator:TARGET``; raises for unknown roles."""
    if role not in TRAIN_ROLES:
        raise UsageError(f"unknown role {role!r} for gpm train; expected one of {', '.join(TRAIN_ROLES)}")
    if role == "discriminator":
        if not target:
            raise UsageError("gpm train discriminator needs --for diffflow|discr-flow|ddls")
        if target not in DISCRIMINATOR_TARGETS:
            raise UsageError(f"--for must be one of {', '.join(DISCRIMINATOR_TARGETS)}, not {target!r}")
        return f"discriminator:{target}"
    if target:
        raise UsageError("--for applies to gpm train discriminator only")
    return role


def get_role(key: str) -> RoleSpec:
    _import_all()
    if key not in REGISTRY:
        raise NotAvailableError(f"gpm train {key.replace(':', ' --for ')} is not available yet")
    return REGISTRY[key]


def available() -> dict[str, RoleSpec]:
    _import_all()
    return dict(REGISTRY)


def train(role: str, data: str, out_dir, *, target: str | None = None, args: dict[str, Any] | None = None,
          data_dir=None, image_size: int | None = None, progress=None, **opts) -> dict[str, Any]:
    """Python API of ``gpm train``: ``train("score", "pentagon", "out/", steps=500, args={"arch": "mlp"})``.

    ``opts`` are :class:`gpmcli.train.common.TrainOptions` fields; ``args`` the role's options (defaults filled in).
    Returns a summary (output folder, steps, wall seconds, last losses)."""
    from gpmcli.data import load_dataset
    from gpmcli.train.common import Loop, TrainOptions

    key = role_key(role, target)
    spec = get_role(key)
    full = {o.name: o.default for o in spec.options}
    unknown = set(args or {}) - set(full)
    if unknown:
        raise UsageError(f"unknown option(s) for {key}: {', '.join(sorted(unknown))}")
    full.update(args or {})
    bad = set(opts) - set(TrainOptions.__dataclass_fields__)
    if bad:
        raise UsageError(f"unknown training option(s): {', '.join(sorted(bad))}")
    from gpmcli.data import Dataset

    dataset = data if isinstance(data, Dataset) else load_dataset(data, data_dir=data_dir, image_size=image_size)
    return Loop(spec.trainer, key, full, dataset, TrainOptions(**opts), out_dir, progress=progress).run()
