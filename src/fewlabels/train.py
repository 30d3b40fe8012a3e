"""The one training loop. It owns zero_grad / backward / step, autocast, the progress bar,
logging and the non-finite-loss check; it knows nothing about what the loss computes."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from . import optimizers
from .distributed import average_gradients
from .errors import Terminated, UsageError, check_choice, check_positive, is_finite_number
from .runtime import Runtime
from .sharing import ThreadShare

# A loss function takes a batch of indices and returns (scalar loss, metrics to show).
LossFn = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


class TrainingDiverged(UsageError):
    """The loss became NaN or infinite; the model keeps its weights from the last good step."""


def batch_size(batch: int | float, n: int) -> int:
    """``batch`` as a size: an int is a size, a float in (0, 1] a fraction of ``n``."""
    if not is_finite_number(batch) or batch <= 0:
        raise UsageError(f"batch={batch!r} is not allowed: use a size >= 1 or a fraction in (0, 1]")
    if isinstance(batch, float):
        if batch > 1:
            if not batch.is_integer():
                raise UsageError(f"batch={batch!r} is not allowed: use a size >= 1 "
                                 "or a fraction in (0, 1]")
            return min(int(batch), n)
        return max(1, round(batch * n))
    return min(int(batch), n)


class shuffled_batches(Iterator[torch.Tensor]):  # noqa: N801 - used as a function
    """An endless stream of batches: each epoch is a fresh permutation of ``indices`` drawn
    from ``generator``. ``state()`` / ``restore()`` save and restore where the stream is
    (the generator's state at the epoch's start and the position in it), so a resumed run
    sees the same batches as one that never stopped."""

    def __init__(self, indices: torch.Tensor, size: int, generator: torch.Generator):
        self.indices, self.size, self.generator = indices, size, generator
        self._epoch_start: torch.Tensor | None = None
        self._batches: tuple[torch.Tensor, ...] = ()
        self._position = 0

    def _new_epoch(self) -> None:
        perm = self.indices[torch.randperm(len(self.indices), generator=self.generator)]
        self._batches, self._position = perm.split(self.size), 0

    def __next__(self) -> torch.Tensor:
        if self._position >= len(self._batches):
            self._epoch_start = self.generator.get_state()
            self._new_epoch()
        self._position += 1
        return self._batches[self._position - 1]

    def state(self) -> dict:
        return {"epoch_start": self._epoch_start, "position": self._position}

    def restore(self, state: dict) -> None:
        if state["epoch_start"] is not None:
            self.generator.set_state(state["epoch_start"])
            self._epoch_start = state["epoch_start"]
            self._new_epoch()
            self._position = int(state["position"])


def steps_per_epoch(n: int, size: int) -> int:
    return math.ceil(n / size)


SCHEDULES = ("cosine", "constant")  # learning-rate schedules a config may name


def warmup_cosine(steps: int, warmup: int) -> Callable[[int], float]:
    """lr multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0."""

    def schedule(step: int) -> float:
        if step <= warmup:
            return step / max(1, warmup)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return schedule


@dataclass
class History:
    """What a training run logged: one record per ``log_every`` steps."""

    records: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    # (other processes' load in CPUs, threads set) each time sharing the CPU changed them
    thread_changes: list[tuple[float, int]] = field(default_factory=list)

    def series(self, key: str, x: str = "step") -> tuple[list[float], list[float]]:
        """(x values, ``key`` values) over the records that logged ``key``."""
        rows = [r for r in self.records if key in r]
        return [r[x] for r in rows], [r[key] for r in rows]


@dataclass
class Resume:
    """Saving a run of ``loop`` as it goes, and continuing one. ``save(state)`` gets the loop's
    state every ``every`` steps, and after the step in progress when SIGINT or SIGTERM
    arrives (the interruption then goes on); ``start`` is such a state to continue from —
    the caller has restored its model and its own generators to the same moment."""

    save: Callable[[dict], None]
    every: int = 200
    start: dict | None = None


@contextlib.contextmanager
def _signals_wait_for_the_step(active: bool):
    """While active (in the main thread): SIGINT and SIGTERM are noted, not raised, so the
    loop can finish its step and save before it stops."""
    pending: list[int] = []
    if not active or threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class MovingAverage:
    """An exponential moving average of ``net``'s weights and buffers (decay ``decay``; a
    mean teacher: Tarvainen & Valpola, NeurIPS 2017): ``update()`` after each step,
    ``into_net()`` copies it into ``net`` at the end. ``decay`` 0: nothing is kept."""

    def __init__(self, net: nn.Module, decay: float):
        self.average = (torch.optim.swa_utils.AveragedModel(
            net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay),
            use_buffers=True) if decay > 0 else None)
        self.net = net

    @property
    def module(self) -> nn.Module:
        """The averaged network (``net`` itself when nothing is kept)."""
        return self.average.module if self.average is not None else self.net

    def update(self) -> None:
        if self.average is not None:
            self.average.update_parameters(self.net)

    def into_net(self) -> None:
        """The last step counted, then the average loaded into ``net``."""
        if self.average is not None:
            self.update()
            self.net.load_state_dict(self.average.module.state_dict())


def loop(params: list[nn.Parameter] | list[dict], loss_fn: LossFn,
        batches: Iterator[torch.Tensor], *,
        steps: int, lr: float, runtime: Runtime, weight_decay: float = 0.0,
        log_every: int = 1, evaluate: Callable[[], dict[str, float]] | None = None,
        eval_every: int = 0, desc: str = "train", progress: bool = True,
        schedule: Callable[[int], float] | None = None,
        per_epoch: int | None = None, resume: Resume | None = None,
        stop: Callable[[dict], bool] | None = None, optimizer: str = "adamw") -> History:
    """Train ``params`` with AdamW (Loshchilov & Hutter, ICLR 2019; Adam when
    ``weight_decay`` is 0), or with ``optimizer="sgd"`` SGD with Nesterov momentum 0.9 and
    weight decay coupled to the gradient, not on BatchNorm weights or biases (FixMatch's),
    for ``steps`` steps; ``schedule(step)`` scales ``lr``.
    ``params`` may be parameter groups, ``{"params": [...], "lr_scale": 0.1}``: a group's
    learning rate is ``lr`` times its scale (e.g. a lower one for a pretrained encoder).

    ``loss_fn(batch)`` is called under autocast; ``evaluate()`` (no grad) every
    ``eval_every`` steps and at the end, its values logged and shown in the bar.
    Stops with ``TrainingDiverged`` on a non-finite loss, before that step changes weights.
    With ``per_epoch`` (steps in an epoch), each record also says its ``epoch``.
    With ``resume``, the run saves its state as it goes and can start from a saved one; on
    a CPU the resumed run ends bit-identical to one that never stopped. ``stop(record)``
    is asked after each evaluation: True ends the run there (``steps`` is then a limit).
    """
    check_positive("steps", steps, integer=True)
    check_positive("lr", lr)
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    for g in groups:
        g.setdefault("lr_scale", 1.0)
        g["lr"] = lr * g["lr_scale"]
    check_choice("optimizer", optimizer, optimizers.OPTIMIZERS)
    opt = optimizers.build(optimizer, groups, lr, weight_decay)
    every_param = [p for g in opt.param_groups for p in g["params"]]
    history = History()
    start = time.perf_counter()
    shown: dict[str, float] = {}
    sums: dict[str, float] = {}
    count, first, before = 0, 1, 0.0
    if resume is not None and resume.start is not None:
        saved = resume.start
        opt.load_state_dict(saved["optimizer"])
        history.records = list(saved["records"])
        sums, count, shown = dict(saved["sums"]), int(saved["count"]), dict(saved["shown"])
        first, before = int(saved["step"]) + 1, float(saved["seconds"])
        if saved["batches"] is not None:
            batches.restore(saved["batches"])

    def one_step(step: int) -> bool:
        """One step; True when ``stop`` ends the run after it."""
        nonlocal sums, count
        batch = next(batches)
        with runtime.autocast():
            loss, metrics = loss_fn(batch)
        if not torch.isfinite(loss):
            bar.close()
            raise TrainingDiverged(f"{desc}: the loss became {loss.item()} at step {step}; "
                                   f"lr={lr} is too high for this model: lower it")
        if schedule is not None:
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"] * schedule(step)
        opt.zero_grad()
        loss.backward()
        average_gradients(every_param)  # over the ranks of a torchrun launch; else nothing
        opt.step()
        for k, v in {"loss": loss.item(), **metrics}.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        due = evaluate is not None and ((eval_every and step % eval_every == 0)
                                        or step == steps)
        if step % log_every == 0 or step == steps or due:
            record = {"step": step, **{k: v / count for k, v in sums.items()}}
            if per_epoch:
                record["epoch"] = step / per_epoch
            if due:
                with torch.no_grad(), runtime.autocast():
                    record.update(evaluate())
            history.records.append(record)
            shown.update({k: v for k, v in record.items() if k not in ("step", "epoch")})
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
            sums, count = {}, 0
            return due and stop is not None and bool(stop(record))
        return False

    def state(step: int) -> dict:
        return {"step": step, "optimizer": opt.state_dict(), "records": history.records,
                "sums": sums, "count": count, "shown": shown,
                "seconds": before + time.perf_counter() - start,
                "batches": batches.state() if hasattr(batches, "state") else None}

    bar = tqdm(range(first, steps + 1), desc=desc, disable=not progress, leave=True,
               dynamic_ncols=True, initial=first - 1, total=steps)
    history.thread_changes = _drive(bar, one_step, state, resume, steps)
    history.seconds = before + time.perf_counter() - start
    bar.close()
    return history


def _drive(bar, one_step: Callable[[int], bool], state: Callable[[int], dict],
           resume: Resume | None, steps: int) -> list:
    """Take the steps of ``bar``: save the state as ``resume`` asks and when a signal
    arrives (then stop), end when a step says so, run on one thread while other processes
    crowd the CPUs. Returns the thread changes."""
    share = ThreadShare()
    try:
        with _signals_wait_for_the_step(resume is not None) as pending:
            for step in bar:
                done = one_step(step)
                share()
                if resume is not None and (pending or (step % resume.every == 0
                                                       and step < steps)):
                    resume.save(state(step))
                if pending:
                    bar.close()
                    raise Terminated() if pending[0] == signal.SIGTERM else KeyboardInterrupt()
                if done:
                    break
    finally:
        share.restore()
    return share.changes
