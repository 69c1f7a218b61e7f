"""Several processes, one run: ``accelerate launch [--multi_gpu] --num_processes N -m gpmcli sample|fid|stats ...``.

``accelerate`` is the engine (docs/interfaces.md#distribution): it starts the processes and :class:`accelerate.PartialState`
joins them into a process group (NCCL on GPUs, gloo on CPU hosts, where ``PartialState(cpu=True)`` is used). gpm adds:

- **Fixed global batches.** The work is cut into the batches a 1-process run would make (``-b`` samples or images,
  in index order); batch ``j`` goes to rank ``j % N``. Each sample draws its noise from its own stream
  (:mod:`gpmcli.noise`), so every file is what a 1-process run writes, whatever N.
- **One failure stops everyone.** Each round of batches ends with a collective "did anyone fail" check
  (:meth:`Dist.collective`): if one rank raised, every rank raises, rank 0 prints one line naming the failing rank,
  the others stay quiet, and all exit with that error's exit code. Nothing is claimed that was not written.
- **Rank 0 speaks.** Progress bars and messages are shown on rank 0 only; it merges the outputs after a barrier.

Outside a launcher (no ``WORLD_SIZE`` > 1 in the environment) :func:`context` is a 1-process stand-in that never
imports accelerate.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from gpmcli.errors import GpmError


class RankFailed(GpmError):
    """Another rank of a distributed run failed; carries that rank's message and exit code."""

    def __init__(self, message: str, exit_code: int = 1, quiet: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.gpm_quiet = quiet  # already reported by rank 0: the CLI prints nothing

    def reported(self) -> None:
        """Called by the CLI after rank 0 printed the line: no rank exits before that (the launcher stops the others
        as soon as one exits, which could cut rank 0 off before it speaks)."""
        try:
            context().barrier()
        except Exception:  # noqa: BLE001 - the process group may already be gone
            pass


def _world_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class Dist:
    """Rank, world size and the few collectives gpm needs. ``enabled`` is False for a 1-process run."""

    def __init__(self, state: Any = None):
        self.state = state
        if state is None:
            self.rank, self.world, self.local_rank, self.device = 0, 1, 0, None
        else:
            self.rank, self.world = int(state.process_index), int(state.num_processes)
            self.local_rank = int(state.local_process_index)
            self.device = torch.device(state.device)
        self.enabled = self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def resolve_device(self, device: str | None) -> torch.device | None:
        """The device of this rank: the launcher's (``cuda:LOCAL_RANK`` or cpu) unless the user named one."""
        if not self.enabled or self.device is None:
            return None
        if device in (None, "auto") or (device == "cuda" and self.device.type == "cuda"):
            return torch.device("cpu") if self.device.type == "cpu" else self.device
        return None

    # ---- work split ------------------------------------------------------------------------------------------------
    def rounds(self, n_batches: int) -> Iterator[tuple[int, int | None]]:
        """``(round, j)`` for each round of global batches: ``j`` is this rank's batch index (``round * N + rank``)
        or None when this rank has no batch in the last round (it still takes part in the collectives)."""
        n_rounds = -(-n_batches // self.world)
        for k in range(n_rounds):
            j = k * self.world + self.rank
            yield k, (j if j < n_batches else None)

    # ---- collectives -----------------------------------------------------------------------------------------------
    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def any_true(self, flag: bool) -> bool:
        if not self.enabled:
            return bool(flag)
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def check(self, err: BaseException | None) -> None:
        """Collective: raise on every rank if any rank passes an error (1 process: re-raise ``err``)."""
        if not self.enabled:
            if err is not None:
                raise err
            return
        if isinstance(err, RankFailed):  # raised by an inner collective on every rank at once: already agreed
            raise err
        if not self.any_true(err is not None):
            return
        mine = None
        if err is not None:
            code = getattr(err, "exit_code", 1)
            text = str(err) if isinstance(err, GpmError) else f"unexpected {type(err).__name__}: {err}"
            mine = (self.rank, text, int(code))
        reports = [r for r in self.all_gather(mine) if r is not None]
        rank, text, code = reports[0]
        if self.is_main:
            if len(reports) == self.world and all(r[1] == text for r in reports):  # the same failure everywhere
                raise RankFailed(text, code) from err
            more = f" ({len(reports) - 1} other rank(s) failed too)" if len(reports) > 1 else ""
            raise RankFailed(f"rank {rank} of {self.world}: {text}{more}; every rank stopped", code) from err
        raise RankFailed(text, code, quiet=True) from err

    @contextmanager
    def collective(self) -> Iterator[None]:
        """Run the block on every rank, then the "did anyone fail" check. With one process errors pass through."""
        err = None
        try:
            yield
        except Exception as e:  # noqa: BLE001 - reported through the collective
            if not self.enabled:
                raise
            err = e
        self.check(err)


_CONTEXT: Dist | None = None


def context() -> Dist:
    """The process's :class:`Dist` (starts the process group on first use under a launcher)."""
    global _CONTEXT
    if _CONTEXT is None:
        if _world_from_env() > 1:
            from accelerate import PartialState

            _CONTEXT = Dist(PartialState(cpu=not torch.cuda.is_available()))
            atexit.register(_shutdown)
        else:
            _CONTEXT = Dist()
    return _CONTEXT


def _shutdown() -> None:
    """Close the process group before the interpreter exits: a gloo group left to the C++ destructors can abort the
    process ("terminate called without an active exception") when its peer is still running."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - exiting anyway
        pass


def finish(code: int) -> None:
    """End a distributed process cleanly, then exit with ``code`` (returns at once outside a launcher).

    Every rank meets at a last barrier after a successful run (so no rank's exit closes sockets a peer still reads),
    the process group is destroyed while the interpreter is fully alive, and the process leaves through ``os._exit``
    after flushing stdout/stderr: interpreter finalization is skipped, because that is where gloo's worker threads
    and the tensors they hold can still abort the process (SIGABRT, "terminate called without an active exception")
    after all the work was written."""
    if _CONTEXT is None or not _CONTEXT.enabled:
        return
    import sys

    if code == 0:
        try:
            _CONTEXT.barrier()
        except Exception:  # noqa: BLE001 - a peer is already gone: nothing left to wait for
            pass
    _shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


def is_main_process() -> bool:
    """True on rank 0 and outside a launcher, without starting a process group."""
    if _CONTEXT is not None:
        return _CONTEXT.is_main
    return os.environ.get("RANK", "0") == "0"


def fail_hook(indices: list[int]) -> None:
    """Test hook: ``GPM_FAIL_AT=I`` makes the batch holding sample/image ``I`` fail before it is computed (to test that
    one failing rank stops the run cleanly and that ``--resume`` completes it)."""
    at = os.environ.get("GPM_FAIL_AT")
    if at is not None and at.strip().lstrip("-").isdigit() and int(at) in indices:
        raise RuntimeError(f"injected failure at index {int(at)} (GPM_FAIL_AT)")
