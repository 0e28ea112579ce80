"""The training loop shared by pretraining and SFT: explicit, resumable, data-parallel through accelerate.

One optimizer step = `grad_accum` micro-batches of `batch_size` sequences on each of the `world` processes. The
order of examples is a pure function of (seed, step), so a resumed run sees exactly the batches the uninterrupted
run would have seen, and a 2-process run with batch B sees the same rows per step as a 1-process run with batch 2B.

Metrics (metrics.jsonl, split "train", every `log_every` steps):
- `loss`: mean next-token cross-entropy over labelled tokens, averaged over the steps since the last log line.
  Pretraining starts near ln(vocab) (9.0 for 8192) and should fall steadily.
- `lr`: learning rate of the step. `grad_norm`: global gradient norm before clipping; spikes far above the usual
  value point at a too-high learning rate.
- `tokens_per_s`: labelled tokens processed per second over all processes (throughput).
Split "eval": `loss` and `ppl = exp(loss)` on held-out data.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alinea.config import AlineaConfig, TrainConfig
from alinea.errors import UserError
from alinea.losses import IGNORE_INDEX, shift_for_next_token, token_nll
from alinea.model.causal_lm import save_checkpoint
from alinea.model.fast import fuse_activations
from alinea.progress import progress_bar
from alinea.train.runs import MetricsLogger, RunDir
from alinea.train.schedule import warmup_cosine


class Interrupted(UserError):
    """Ctrl-C during training: a checkpoint was written; the message says how to resume."""

    exit_code = 130


@dataclass
class TokenBatch:
    """A padded batch of token sequences."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T) 1 for real tokens
    labels: torch.Tensor  # (B, T) token ids, IGNORE_INDEX where no loss is wanted
    dense: bool = False  # every position but the last predicts a label (packed pretraining): no masking needed

    def to(self, device) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device), self.dense
        )


@dataclass
class TrainResult:
    run_dir: Path
    final_dir: Path
    steps: int
    train_loss: float
    eval_loss: float | None
    tokens_per_s: float


# ---------------------------------------------------------------------------------------------------------------------
# Precision and the loss module


def num_processes() -> int:
    """Processes of this (possibly distributed) run: 1, or what `accelerate launch` / torchrun started.

    Read from WORLD_SIZE (set by both launchers) so that asking does not initialise the process group early.
    """
    return int(os.environ.get("WORLD_SIZE", "1"))


def cpu_supports_fast_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX); without them bf16 is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def keep_freed_memory() -> bool:
    """Ask the C library's malloc to keep freed memory for reuse rather than give it back to the kernel.

    A training step frees and allocates the same large activation buffers every step. By default glibc serves the
    largest ones with fresh pages from the kernel (mmap) and returns freed memory at the top of its heap, so every
    step pays a page fault and a zero-fill per 4 KB page again: in `alinea bench reward`, 8,000 faults a step with
    torch's GEMMs and 40,000 (0.07 s of a 0.6 s step) with oneDNN's; in a PPO update of `alinea bench ppo`, 40,000
    to 55,000 (5.0-5.2 s; none and 4.7-4.9 s with this). `TrainStep` and `PolicyGradientTrainer` call it. With both
    thresholds raised, freed blocks are reused, as PyTorch's caching allocator does on GPUs; peak memory stays about
    the same, but the process keeps it until it exits. Applies to the whole process; a no-op (False) where the C library has no glibc `mallopt`.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


@contextlib.contextmanager
def attention_without_cudnn():
    """On a CUDA GPU, PyTorch's attention without its cuDNN kernels inside this block; elsewhere nothing changes.

    torch 2.11 to 2.13 with cuDNN on Hopper GPUs returns NaN query gradients from `scaled_dot_product_attention` when
    a mask is passed, the sequence length is 64 modulo 128, and some query row attends to nothing, as the left-padded
    rows of an RL batch do (pytorch/pytorch#196678). Found here as PPO's first update going NaN on an H200
    (docs/gpu.md). Inside the block PyTorch picks among its flash, memory-efficient and plain kernels, which compute
    the same function. ALINEA_CUDNN_SDP=1 leaves the choice alone, for a torch with the bug fixed.
    """
    if not torch.cuda.is_available() or os.environ.get("ALINEA_CUDNN_SDP") == "1":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


def resolve_precision(precision: str) -> str:
    """'fp32' or 'bf16' for the configured `precision` (auto: bf16 only where the hardware makes it faster)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"precision: expected one of auto, fp32, bf16, got {precision!r}.")
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_fast_bf16() else "fp32"


class CausalLMLoss(nn.Module):
    """Wraps a causal LM so that one forward returns the mean loss over labelled tokens.

    Logits are computed only at positions that have a target (the vocabulary projection is the costliest matmul of
    a small model; SFT skips it on prompt tokens). Going through this module's forward keeps DDP's gradient sync.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def _base(self) -> nn.Module:
        model = self.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def forward(self, batch: TokenBatch):
        """Mean next-token loss over labelled positions, and their count (a tensor: no host sync)."""
        input_ids, attention_mask, labels, dense = batch.input_ids, batch.attention_mask, batch.labels, batch.dense
        base = self._base()
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B,T,H)
        head = base.get_output_embeddings()
        if dense:
            # Packed pretraining: position t predicts labels[t + 1] everywhere; no gather, no data-dependent shape.
            logits = head(hidden[:, :-1])  # (B, T-1, V)
            nll = token_nll(logits.flatten(0, 1), labels[:, 1:].flatten())  # (B*(T-1),)
            return nll.mean(), torch.tensor(nll.numel(), device=nll.device)
        targets = shift_for_next_token(labels)  # (B, T)
        keep = targets != IGNORE_INDEX
        logits = head(hidden[keep])  # (N, V): the vocabulary projection only where a target exists
        nll = token_nll(logits, targets[keep])  # (N,)
        n_tokens = keep.sum()
        return nll.sum() / n_tokens.clamp(min=1), n_tokens


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not norms, biases).

    A parameter with an `lr_scale` attribute (e.g. a loss's own few scalars, such as annotator reliabilities) goes to
    a group of its own with learning rate `lr * lr_scale` and no decay.
    """
    decay, no_decay, scaled = [], [], {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if hasattr(param, "lr_scale"):
            scaled.setdefault(float(param.lr_scale), []).append(param)
        else:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups += [{"params": ps, "weight_decay": 0.0, "lr": cfg.lr * k} for k, ps in scaled.items()]
    kwargs = dict(lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # fused kernel not available for this device/dtype
        return torch.optim.AdamW(groups, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Data order


def example_indices(step: int, micro: int, *, n_examples: int, global_batch: int, grad_accum: int, seed: int):
    """Indices of the examples in micro-batch `micro` of optimizer step `step`, over all processes.

    The stream is the concatenation of per-epoch permutations (epoch e shuffled with seed + e), read in order.
    """
    start = (step * grad_accum + micro) * global_batch
    out = []
    for position in range(start, start + global_batch):
        epoch, offset = divmod(position, n_examples)
        out.append(int(_epoch_permutation(n_examples, seed, epoch)[offset]))
    return out


_PERM_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    key = (n, seed, epoch)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 8:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = np.random.default_rng([seed, epoch]).permutation(n)
    return _PERM_CACHE[key]


# ---------------------------------------------------------------------------------------------------------------------
# The step


class TrainStep:
    """Model + optimizer + accelerator; `step(micro_batches)` does one optimizer step and returns its metrics."""

    def __init__(
        self, model: nn.Module, cfg: TrainConfig, *, loss_module: nn.Module | None = None, accelerator=None
    ) -> None:
        from accelerate import Accelerator

        self.cfg = cfg
        self.precision = resolve_precision(cfg.precision)
        keep_freed_memory()
        if accelerator is None:
            accelerator = Accelerator(
                mixed_precision="bf16" if self.precision == "bf16" else "no",
                cpu=not torch.cuda.is_available(),
            )
        self.accelerator = accelerator
        # The loss module holds the model (as `.model`) and any parameters of the loss itself (e.g. annotator
        # reliabilities); one forward(batch) returns (mean loss, count). Default: next-token prediction.
        self.loss_module = loss_module if loss_module is not None else CausalLMLoss(model)
        self._model = model
        fuse_activations(model)  # same function, fused kernel (model/fast.py)
        self.optimizer = make_optimizer(self.loss_module, cfg)
        self.wrapped, self.optimizer = accelerator.prepare(self.loss_module, self.optimizer)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]

    @property
    def model(self) -> nn.Module:
        return self._model

    def set_lr(self, step: int) -> float:
        factor = warmup_cosine(
            step, warmup_steps=self.cfg.warmup_steps, max_steps=self.cfg.max_steps, min_ratio=self.cfg.min_lr_ratio
        )
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.cfg.lr * factor

    def step(self, step: int, micro_batches: Sequence[TokenBatch]) -> dict[str, float]:
        """Forward/backward over the micro-batches, clip, AdamW update. Returns loss, lr, grad_norm, tokens."""
        acc = self.accelerator
        self.wrapped.train()
        lr = self.set_lr(step)
        total_loss = torch.zeros((), device=acc.device)
        total_tokens = torch.zeros((), device=acc.device, dtype=torch.long)
        for i, batch in enumerate(micro_batches):
            batch = batch.to(acc.device)
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last else acc.no_sync(self.wrapped)
            with sync:
                loss, n_tokens = self.wrapped(batch)
                acc.backward(loss / len(micro_batches))
            total_loss += loss.detach()
            total_tokens += n_tokens
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.wrapped.parameters() if p.grad is not None],
            self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf"),
        )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean_loss = acc.reduce(total_loss / len(micro_batches), reduction="mean")
        tokens = acc.reduce(total_tokens, reduction="sum")
        return {"loss": float(mean_loss), "lr": lr, "grad_norm": float(grad_norm), "tokens": int(tokens)}

    @torch.no_grad()
    def evaluate(self, batches: Sequence[TokenBatch]) -> float:
        """Token-weighted mean loss over `batches` (each process takes its share; the sums are reduced)."""
        acc = self.accelerator
        self.wrapped.eval()
        loss_sum = torch.zeros((), device=acc.device, dtype=torch.float64)
        token_sum = torch.zeros((), device=acc.device, dtype=torch.float64)
        for batch in batches[acc.process_index :: acc.num_processes]:
            batch = batch.to(acc.device)
            with acc.autocast():
                loss, n_tokens = self.wrapped(batch)
            loss_sum += loss.double() * n_tokens
            token_sum += n_tokens
        loss_sum = acc.reduce(loss_sum, reduction="sum")
        token_sum = acc.reduce(token_sum, reduction="sum")
        return float(loss_sum / token_sum.clamp(min=1))

    # -- resumable state -------------------------------------------------------------------------------------------

    def state(self, step: int) -> dict:
        trainable = {k: v for k, v in self.loss_module.named_parameters() if v.requires_grad}
        return {
            "step": step,
            "model": {k: v.detach().cpu().clone() for k, v in trainable.items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
        }

    def load_state(self, state: dict) -> int:
        params = dict(self.loss_module.named_parameters())
        missing = [k for k in state["model"] if k not in params]
        if missing:
            raise UserError(f"checkpoint does not match the model: unknown parameters {missing[:3]}")
        with torch.no_grad():
            for name, value in state["model"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        return int(state["step"])


# ---------------------------------------------------------------------------------------------------------------------
# The loop


def train_loop(
    *,
    stage: str,
    cfg: TrainConfig,
    full_cfg: AlineaConfig,
    model: nn.Module,
    tokenizer,
    n_examples: int,
    collate: Callable[[list[int]], TokenBatch],
    eval_batches: Sequence[TokenBatch],
    resume: str | Path | None = None,
    save_model: Callable[[nn.Module, Path], None] | None = None,
    extra_meta: dict | None = None,
    loss_module: nn.Module | None = None,
    eval_fn: Callable[[TrainStep], dict[str, float]] | None = None,
    run_dir: str | Path | None = None,
    on_finish: Callable[[TrainStep, RunDir], None] | None = None,
    count_unit: str = "tokens",
) -> TrainResult:
    """Train `model` for `cfg.max_steps` optimizer steps; see the module docstring for the data order and metrics."""
    if n_examples <= 0:
        raise UserError(f"{stage}: no training examples.")
    trainer = TrainStep(model, cfg, loss_module=loss_module)
    acc = trainer.accelerator
    world = acc.num_processes
    global_batch = cfg.batch_size * world

    if resume:
        run = RunDir.open(resume, stage=stage)
    elif acc.is_main_process:
        meta = {"precision": trainer.precision, "processes": world, "device": str(acc.device), **(extra_meta or {})}
        run = RunDir.create(stage, full_cfg, runs_dir=cfg.runs_dir, seed=cfg.seed, extra=meta, path=run_dir)
    else:
        run = None
    run = _broadcast_run(acc, run)

    start_step = 0
    if resume:
        checkpoint = run.latest_checkpoint()
        if checkpoint is not None:
            state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)
            start_step = trainer.load_state(state)
        if acc.is_main_process:
            run.truncate_metrics(start_step)
        if start_step >= cfg.max_steps and run.final_dir.is_dir():
            acc.print(f"{run.path}: already finished ({start_step} steps).")
            return _finished_result(run, start_step)
    logger = MetricsLogger(run, enabled=acc.is_main_process)
    best = BestKeeper(run, cfg.best_metric, enabled=cfg.keep_best, is_main=acc.is_main_process)
    save = save_model or (lambda m, d: save_checkpoint(m, tokenizer, d))

    def write_checkpoint(step: int) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            target = run.checkpoint_dir(step)
            save(trainer.model, target)
            tmp = target / "trainer_state.pt.tmp"
            torch.save(trainer.state(step), tmp)
            tmp.rename(target / "trainer_state.pt")
            run.prune_checkpoints(keep=2)
        acc.wait_for_everyone()

    window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
    last_loss, eval_loss, throughput = float("nan"), None, 0.0
    step = start_step
    try:
        with progress_bar(stage, cfg.max_steps, rate_unit=count_unit[:3], completed=start_step) as bar:
            while step < cfg.max_steps:
                micro, batch_examples = [], []
                for m in range(cfg.grad_accum):
                    indices = example_indices(
                        step, m, n_examples=n_examples, global_batch=global_batch, grad_accum=cfg.grad_accum,
                        seed=cfg.seed,
                    )
                    mine = indices[acc.process_index * cfg.batch_size : (acc.process_index + 1) * cfg.batch_size]
                    micro.append(collate(mine))
                    batch_examples.extend(mine)
                metrics = trainer.step(step, micro)
                if not math.isfinite(metrics["loss"]):
                    last = run.latest_checkpoint()
                    shown = ", ".join(map(str, batch_examples[:16])) + (" ..." if len(batch_examples) > 16 else "")
                    raise UserError(
                        f"{stage}: the loss became {metrics['loss']} at step {step + 1} (batch of training examples "
                        f"{shown}). Nothing was saved from this step; the last good checkpoint is "
                        f"{last if last else 'none (no checkpoint yet)'}. Lower {stage}.lr (now {cfg.lr}) or raise "
                        f"{stage}.warmup_steps, and resume with --resume {run.path}."
                    )
                step += 1
                last_loss = metrics["loss"]
                window_loss += metrics["loss"]
                window_steps += 1
                window_tokens += metrics["tokens"]
                bar.advance(1, rate_count=metrics["tokens"], info=f"loss {metrics['loss']:.3f}")
                if step % max(1, cfg.log_every) == 0 or step == cfg.max_steps:
                    elapsed = time.perf_counter() - window_start
                    throughput = window_tokens / max(elapsed, 1e-9)
                    logger.log(
                        step, "train", loss=window_loss / window_steps, lr=metrics["lr"],
                        grad_norm=metrics["grad_norm"], **{f"{count_unit}_per_s": throughput},
                    )
                    window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
                if (eval_batches or eval_fn) and (
                    (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.max_steps
                ):
                    eval_metrics = _evaluate(trainer, eval_batches, eval_fn, logger, step)
                    eval_loss = eval_metrics.get("loss")
                    best.offer(trainer, step, eval_metrics)
                if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_steps:
                    write_checkpoint(step)
    except KeyboardInterrupt:
        if step > start_step:
            write_checkpoint(step)
        logger.close()
        raise Interrupted(
            f"{stage}: interrupted at step {step}; checkpoint written. Continue with "
            f"`alinea {stage} --resume {run.path}`."
        ) from None
    restored = best.restore(trainer)
    if restored is not None:
        acc.print(f"{stage}: final/ holds the best evaluation: {restored['metric']} {restored['value']:.4f} at step "
                  f"{restored['step']}")
        eval_loss = _evaluate(trainer, eval_batches, eval_fn, None, step).get("loss")
    if (eval_batches or eval_fn) and eval_loss is None:
        eval_loss = _evaluate(trainer, eval_batches, eval_fn, None, step).get("loss")
    if on_finish is not None:
        on_finish(trainer, run)
    acc.wait_for_everyone()
    if acc.is_main_process:
        save(trainer.model, run.final_dir)
    acc.wait_for_everyone()
    logger.close()
    return TrainResult(
        run_dir=run.path, final_dir=run.final_dir, steps=step, train_loss=last_loss, eval_loss=eval_loss,
        tokens_per_s=throughput,
    )


def _evaluate(trainer: TrainStep, eval_batches, eval_fn, logger: MetricsLogger | None, step: int) -> dict:
    """Held-out loss (and whatever `eval_fn` measures), logged under split "eval"."""
    if eval_fn is not None:
        metrics = eval_fn(trainer)
    else:
        loss = trainer.evaluate(eval_batches)
        metrics = {"loss": loss, "ppl": math.exp(min(loss, 50.0))}
    if logger is not None:
        logger.log(step, "eval", **metrics)
    return metrics


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in ("loss", "ppl", "ece"))


class BestKeeper:
    """Remembers the weights of the best evaluation (in `run/best/`, so a resumed run keeps it) and restores them."""

    def __init__(self, run: RunDir, metric: str, *, enabled: bool, is_main: bool) -> None:
        self.dir = run.path / "best"
        self.metric = metric
        self.enabled = enabled
        self.is_main = is_main
        self.info = None
        if enabled and (self.dir / "best.json").is_file():
            self.info = json.loads((self.dir / "best.json").read_text(encoding="utf-8"))

    def offer(self, trainer: TrainStep, step: int, metrics: dict) -> None:
        value = metrics.get(self.metric)
        if not self.enabled or value is None or not math.isfinite(value):
            return
        if self.info is not None:
            best = self.info["value"]
            if (value >= best) if lower_is_better(self.metric) else (value <= best):
                return
        self.info = {"step": step, "metric": self.metric, "value": value}
        if self.is_main:
            self.dir.mkdir(exist_ok=True)
            tmp = self.dir / "state.pt.tmp"
            torch.save(trainer.state(step)["model"], tmp)
            tmp.rename(self.dir / "state.pt")
            (self.dir / "best.json").write_text(json.dumps(self.info) + "\n", encoding="utf-8")

    def restore(self, trainer: TrainStep) -> dict | None:
        """Load the best weights into the trainer's model (every process); returns what was restored."""
        if not self.enabled or self.info is None:
            return None
        trainer.accelerator.wait_for_everyone()
        state = torch.load(self.dir / "state.pt", map_location="cpu", weights_only=True)
        params = dict(trainer.loss_module.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)
        return self.info


def _finished_result(run: RunDir, steps: int) -> TrainResult:
    """The result of a run that had already finished, read back from its metrics."""
    train = run.read_metrics("train")
    evals = run.read_metrics("eval")
    return TrainResult(
        run_dir=run.path, final_dir=run.final_dir, steps=steps,
        train_loss=train[-1]["loss"] if train else float("nan"),
        eval_loss=evals[-1]["loss"] if evals else None,
        tokens_per_s=next((v for k, v in (train[-1] if train else {}).items() if k.endswith("_per_s")), 0.0),
    )


def _broadcast_run(acc, run: RunDir | None) -> RunDir:
    """All processes use the run directory the main process created."""
    if acc.num_processes == 1:
        return run
    from accelerate.utils import broadcast_object_list

    holder = [str(run.path) if run is not None else None]
    broadcast_object_list(holder, from_process=0)
    return RunDir(holder[0])
