"""The training loop every role shares (see :mod:`gpmcli.train` for the trainer API)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gpmcli.data import Dataset
from gpmcli.device import device_name, resolve_device
from gpmcli.errors import UsageError
from gpmcli.precision import use_channels_last
from gpmcli.train.context import (  # noqa: F401  (the trainer API, imported from here by roles and tests)
    EMA, PRECISIONS, RoleTrainer, TrainContext, TrainOptions)

STATE_FILE = "train_state.pt"
def _device(device: str | None) -> torch.device:
    return resolve_device(device)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _to_device(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


class Loop:
    """Runs a :class:`RoleTrainer` for ``opts.steps`` steps, with periodic checkpoints and ``--resume``."""

    def __init__(self, trainer_cls: type[RoleTrainer], role_key: str, args: dict[str, Any], data: Dataset,
                 opts: TrainOptions, out_dir: str | Path,
                 progress: Callable[[int, int, dict[str, float]], None] | None = None):
        if opts.steps < 1 or opts.batch_size < 1:
            raise UsageError("--steps and --batch-size must be positive")
        if opts.lr <= 0:
            raise UsageError("--lr must be positive")
        if opts.ema is not None and not 0 < opts.ema < 1:
            raise UsageError("--ema must be a decay in (0, 1), e.g. 0.999")
        if opts.max_minutes is not None and not opts.max_minutes > 0:
            raise UsageError("--max-minutes must be positive")
        if opts.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
        self.role_key, self.args, self.data, self.opts = role_key, args, data, opts
        self.out = Path(out_dir)
        self.progress = progress
        self.device = _device(opts.device)
        if self.device.type == "cuda":  # one batch shape for the whole run: let cuDNN pick its fastest convolutions
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(opts.seed)  # network initialisation
        self.ctx = TrainContext(opts, data, self.device)
        self.trainer = trainer_cls(self.ctx, args)
        self.trainer.setup()
        if self.opts.precision == "fp32" or self.device.type == "cuda":
            # conv networks train in channels_last (the layout the CPU and GPU kernels use natively; in place, so the
            # optimisers keep their parameters). On CPU it speeds an fp32 step up (the MNIST UNet's 1.16x-1.23x at batch
            # 128 on 2 cores, benchmarks/layout.py) but not a bf16 one, which stays in NCHW. Checkpoints are saved
            # contiguous.
            for module in self.trainer.modules().values():
                if use_channels_last(module):
                    module.to(memory_format=torch.channels_last)
        self.emas = {}
        if opts.ema:
            for _, (mname, _cfg) in self.trainer.exports().items():
                self.emas.setdefault(mname, EMA(self.trainer.modules()[mname], opts.ema))
        self.wall_before = 0.0
        self.start_step = 0
        self.history: list[dict[str, float]] = []
        self.sessions: list[dict[str, Any]] = []  # earlier runs of a resumed training (one record each)

    # ----- resume state -----
    def state_dict(self, step: int, wall: float) -> dict[str, Any]:
        return {
            "format": 1, "role": self.role_key, "step": step, "wall_seconds": wall,
            "args": {k: v for k, v in self.args.items() if isinstance(v, (int, float, str, bool, type(None), list))},
            "modules": {k: _cpu_state(m) for k, m in self.trainer.modules().items()},
            "optimizers": {k: _to_device(o.state_dict(), "cpu") for k, o in self.trainer.optimizers().items()},
            "ema": {k: _cpu_state(e.shadow) for k, e in self.emas.items()},
            "extra": _to_device(self.trainer.extra_state(), "cpu"),
            "history": self.history[-1000:],
            "sessions": self.all_sessions(step, wall),
        }

    def all_sessions(self, step: int, wall: float) -> list[dict[str, Any]]:
        """Every run of this training so far, this one last: steps, device, batch, learning rate, wall time. A run
        resumed on another machine or with another batch size keeps the record of the earlier ones."""
        o = self.opts
        return self.sessions + [{
            "steps": [self.start_step, step], "device": str(self.device), "device_name": device_name(self.device),
            "torch_threads": torch.get_num_threads(), "batch_size": o.batch_size, "lr": o.lr, "precision": o.precision,
            "wall_seconds": round(wall - self.wall_before, 1)}]

    def load_state(self) -> int:
        path = self.out / STATE_FILE
        if not path.is_file():
            raise UsageError(f"--resume: no {STATE_FILE} in {self.out}; train without --resume first")
        try:
            st = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UsageError(f"{path}: cannot read the training state ({e})") from None
        if st.get("role") != self.role_key:
            raise UsageError(f"--resume: {self.out} was trained as {st.get('role')!r}, not {self.role_key!r}")
        for k, m in self.trainer.modules().items():
            try:
                m.load_state_dict(st["modules"][k])
            except (KeyError, RuntimeError) as e:
                raise UsageError(f"--resume: saved network {k!r} does not fit the requested architecture "
                                 f"({str(e).splitlines()[0]}); use the same options as the first run") from None
        for k, o in self.trainer.optimizers().items():
            o.load_state_dict(_to_device(st["optimizers"][k], self.device))
        for k, e in self.emas.items():
            if k in st.get("ema", {}):
                e.shadow.load_state_dict(st["ema"][k])
            else:
                e.shadow.load_state_dict(self.trainer.modules()[k].state_dict())
        self.trainer.load_extra_state(_to_device(st.get("extra", {}), self.device))
        self.wall_before = float(st.get("wall_seconds", 0.0))
        self.history = list(st.get("history", []))
        step = int(st["step"])
        self.sessions = list(st.get("sessions") or [])
        if not self.sessions and step > 0:  # a state written before runs were recorded
            self.sessions = [{"steps": [0, step], "wall_seconds": round(self.wall_before, 1),
                              "note": "earlier runs (written before gpm recorded each run)"}]
        return step

    # ----- checkpoints -----
    def export_module(self, name: str) -> nn.Module:
        return self.emas[name].shadow if name in self.emas else self.trainer.modules()[name]

    def write(self, step: int, wall: float, final: bool, evaluate: bool | None = None) -> None:
        """Checkpoint(s) and ``train_state.pt`` at ``step``; ``final`` marks the run complete. The role's held-out
        evaluation runs for the final write, or when ``evaluate`` says so (a run stopped by ``--max-minutes``)."""
        from gpmcli.checkpoint import atomic_open, model_card, save_checkpoint

        evaluation = None
        if final if evaluate is None else evaluate:
            mods = {k: self.export_module(k) for k in self.trainer.modules()}
            was = {k: m.training for k, m in mods.items()}
            for m in mods.values():
                m.eval()
            evaluation = self.trainer.evaluate(mods)
            for k, m in mods.items():
                m.train(was[k])
        for sub, (mname, cfg) in self.trainer.exports().items():
            config = dict(cfg)
            if evaluation:
                config["evaluation"] = evaluation
            config.setdefault("data", self.data.describe())
            config["provenance"] = {"source": "gpm train", "license": self.args.get("license") or "mit",
                                    "command": self.opts.command}
            config["training"] = self.training_record(step, wall, final, mname)
            config.setdefault("metrics", {})
            d = self.out / sub if sub else self.out
            module = self.export_module(mname)
            was_training = module.training
            module.eval()
            card = model_card(config, self.card_body(sub, mname, config)) + _kept_notes(d)
            save_checkpoint(d, module, config, card=card)
            module.train(was_training)
        with atomic_open(self.out / STATE_FILE, durable=True) as f:
            torch.save(self.state_dict(step, wall), f)

    def training_record(self, step: int, wall: float, final: bool, mname: str) -> dict[str, Any]:
        from gpmcli import __version__

        o = self.opts
        n_params = sum(p.numel() for p in self.trainer.modules()[mname].parameters())
        last = {k: v for k, v in (self.history[-1] if self.history else {}).items() if k != "step"}
        return {
            "role": self.role_key, "steps": step, "target_steps": o.steps, "complete": bool(final),
            "batch_size": o.batch_size, "lr": o.lr, "warmup": o.warmup, "ema": o.ema,
            "ema_schedule": "min(ema, (1 + step) / (10 + step))" if o.ema else None, "seed": o.seed,
            "precision": o.precision, "grad_clip": o.grad_clip, "optimizer": "Adam",
            "device": str(self.device), "device_name": device_name(self.device),
            "torch_threads": torch.get_num_threads(),
            "wall_seconds": round(wall, 1), "parameters": n_params, "final_losses": last,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "gpm": __version__,
            "role_options": {k: v for k, v in self.args.items() if isinstance(v, (int, float, str, bool, type(None), list))},
            "sessions": self.all_sessions(step, wall),
        }

    def card_body(self, sub: str, mname: str, config: dict[str, Any]) -> str:
        t = config["training"]
        data = config.get("data", {})
        lines = [
            f"# {config['role']} checkpoint trained by `gpm train {self.role_key.replace(':', ' --for ')}`", "",
            f"- **data**: `{data.get('dataset')}`, sample shape {data.get('shape')}, range {data.get('range')}",
            f"- **architecture**: `{config['arch']['name']}` ({t['parameters']:,} parameters), "
            f"kwargs `{config['arch'].get('kwargs')}`",
            f"- **command**: `{self.opts.command}`",
            f"- **steps**: {t['steps']} of {t['target_steps']} (batch {t['batch_size']}, Adam lr {t['lr']}, "
            f"EMA {t['ema']}, seed {t['seed']}, precision {t['precision']})",
            f"- **wall time**: {t['wall_seconds']:.0f} s on {t['device']} ({t['device_name']}, "
            f"{t['torch_threads']} threads)" if len(t.get("sessions") or []) < 2 else
            f"- **wall time**: {t['wall_seconds']:.0f} s in {len(t['sessions'])} runs: " + "; ".join(
                _run_text(r) for r in t["sessions"]),
            f"- **final losses**: {', '.join(f'{k} {v:.4g}' for k, v in t['final_losses'].items()) or 'n/a'}",
        ]
        extra = self.trainer.card(sub, config)
        if extra:
            lines += ["", extra.rstrip()]
        if config.get("metrics"):
            lines += ["", "## Measured metrics", ""]
            for k, v in config["metrics"].items():
                lines.append(f"- **{k}**: {v}")
        return "\n".join(lines) + "\n"

    # ----- the loop -----
    def run(self) -> dict[str, Any]:
        start = self.load_state() if self.opts.resume else 0
        self.start_step = start
        if start >= self.opts.steps:
            raise UsageError(f"--resume: {self.out} already has {start} steps; ask for more with --steps")
        for m in self.trainer.modules().values():
            m.train()
        t0 = time.perf_counter()
        deadline = t0 + 60.0 * self.opts.max_minutes if self.opts.max_minutes else None
        batches = self.data.batches(self.opts.batch_size, self.opts.seed, start)
        losses: dict[str, float] = {}
        step, done = start, start
        for step in range(start, self.opts.steps):
            self.ctx.step = step
            batch = next(batches).to(self.device)
            losses = self.trainer.train_step(batch)
            bad = [k for k, v in losses.items() if not (v == v and abs(v) != float("inf"))]
            if bad:
                from gpmcli.errors import NumericalError

                raise NumericalError(f"training diverged at step {step}: {bad[0]} is {losses[bad[0]]}; try a lower "
                                     "--lr", step=step)
            for name, e in self.emas.items():
                e.update(self.trainer.modules()[name], step)
            if step % 10 == 0 or step == self.opts.steps - 1:
                self.history.append({"step": step, **{k: round(float(v), 6) for k, v in losses.items()}})
            if self.progress:
                self.progress(step + 1, self.opts.steps, losses)
            done = step + 1
            if deadline is not None and time.perf_counter() >= deadline and done < self.opts.steps:
                break  # --max-minutes: stop here, resumable
            if self.opts.save_every and done % self.opts.save_every == 0 and done < self.opts.steps:
                self.write(done, self.wall_before + time.perf_counter() - t0, final=False)
        wall = self.wall_before + time.perf_counter() - t0
        if done < self.opts.steps:  # stopped by --max-minutes
            self.write(done, wall, final=False, evaluate=True)
            return {"out": str(self.out), "steps": done, "target_steps": self.opts.steps, "complete": False,
                    "wall_seconds": wall, "losses": losses, "device": str(self.device)}
        if self.history and self.history[-1].get("step") != self.opts.steps - 1:
            self.history.append({"step": self.opts.steps - 1, **{k: float(v) for k, v in losses.items()}})
        self.write(self.opts.steps, wall, final=True)
        return {"out": str(self.out), "steps": self.opts.steps, "target_steps": self.opts.steps, "complete": True,
                "wall_seconds": wall, "losses": losses, "device": str(self.device)}


def _run_text(r: dict[str, Any]) -> str:
    a, b = r["steps"]
    if "device" not in r:  # a record written for runs made before gpm recorded each run
        return f"steps {a:,}-{b:,} {r['wall_seconds']:.0f} s ({r.get('note', 'earlier runs')})"
    return (f"steps {a:,}-{b:,} {r['wall_seconds']:.0f} s on {r['device']} ({r.get('device_name')}), batch "
            f"{r.get('batch_size')}, lr {r.get('lr')}, {r.get('precision')}")


def options_dict(opts: TrainOptions) -> dict[str, Any]:
    return asdict(opts)


KEEP_MARKER = "<!-- notes below are kept by gpm train -->"


def _kept_notes(folder: Path) -> str:
    """What follows :data:`KEEP_MARKER` in the card already in ``folder`` (hand-written notes of a run that is
    resumed across sessions), with the marker; empty when there is none."""
    try:
        old = (folder / "README.md").read_text()
    except OSError:
        return ""
    _, found, tail = old.partition(KEEP_MARKER)
    return f"\n{KEEP_MARKER}\n{tail.strip(chr(10))}\n" if found else ""
