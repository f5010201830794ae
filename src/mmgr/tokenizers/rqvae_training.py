"""Training the RQ-VAE tokenizer with Lightning: the loss, per-epoch history and dead-codeword restarts
(`lightning_module`), and the context managers that keep lightning quiet and leave torch's global determinism
setting as it was. Imported on first fit, so that importing the tokenizer does not import lightning."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from mmgr.tokenizers.rqvae_network import RESTART_POOL, RQNetwork, distances, rotate_to, sinkhorn_assign

if TYPE_CHECKING:
    from mmgr.tokenizers.rqvae import RQVAE


def lightning_module(L: Any) -> type:
    """The LightningModule class for lightning module `L` (`quiet_lightning` imports it)."""

    class RQVAEModule(L.LightningModule):
        """One RQ-VAE training run: loss, per-epoch history and dead-codeword restarts."""

        def __init__(self, net: RQNetwork, cfg: RQVAE) -> None:
            super().__init__()
            self.net, self.cfg = net, cfg
            self.history: list[dict[str, Any]] = []
            self.restart_gen = torch.Generator().manual_seed(cfg.seed + 1)
            self._reset_epoch()

        def _reset_epoch(self) -> None:
            self.usage = [torch.zeros(cb.shape[0], dtype=torch.long) for cb in self.net.codebooks]
            self.pool: list[list[torch.Tensor]] = [[] for _ in self.net.codebooks]
            self.sums = {"loss": 0.0, "recon": 0.0, "quant": 0.0, "items": 0}
            self.epoch_start = time.perf_counter()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            x = batch[0]                                                          # (B, D)
            z = self.net.encoder(x).float()                                       # (B, e)
            with torch.autocast(z.device.type, enabled=False):                    # quantize in float32
                zq, quant = self._quantize(z)
            z_hat = rotate_to(z, zq) if self.cfg.gradient == "rotation" else z + (zq - z).detach()  # (B, e)
            recon = ((self.net.decoder(z_hat).float() - x.float()) ** 2).sum(1).mean()
            loss = recon + quant
            self._accumulate(x.shape[0], loss, recon, quant)
            return loss

        def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Quantized latents z_q (B, e) (no gradient) and the summed codebook + commitment losses."""
            residual, zq, quant = z, torch.zeros_like(z), z.new_zeros(())
            for level, cb in enumerate(self.net.codebooks):
                cb = cb.float()
                dist = distances(residual.detach(), cb.detach())                 # (B, K)
                last = level == len(self.net.codebooks) - 1
                if last and self.cfg.sinkhorn:
                    idx = sinkhorn_assign(dist, self.cfg.sinkhorn_epsilon, self.cfg.sinkhorn_iters)
                else:
                    idx = dist.argmin(1)
                e = cb[idx]                                                       # (B, e)
                quant = quant + ((residual.detach() - e) ** 2).sum(1).mean()
                quant = quant + self.cfg.beta * ((residual - e.detach()) ** 2).sum(1).mean()
                self._remember(level, idx, residual)
                zq = zq + e.detach()
                residual = residual - e.detach()
            return zq, quant

        def _remember(self, level: int, idx: torch.Tensor, residual: torch.Tensor) -> None:
            """Count codeword use and keep recent residuals of this level (restart material)."""
            self.usage[level] += torch.bincount(idx.cpu(), minlength=self.usage[level].shape[0])
            pool = self.pool[level]
            pool.append(residual.detach().float().cpu())
            while sum(p.shape[0] for p in pool) - pool[0].shape[0] >= RESTART_POOL:
                pool.pop(0)

        def _accumulate(self, n: int, loss: torch.Tensor, recon: torch.Tensor, quant: torch.Tensor) -> None:
            for key, value in (("loss", loss), ("recon", recon), ("quant", quant)):
                self.sums[key] += float(value.detach()) * n
            self.sums["items"] += n

        def on_train_epoch_end(self) -> None:
            n = max(self.sums["items"], 1)
            used = [int((u > 0).sum()) for u in self.usage]
            restarts = [0] * len(self.usage)
            if self.cfg.dead_code_restart and self.current_epoch < self.trainer.max_epochs - 1:
                restarts = [self._restart(level) for level in range(len(self.usage))]
            self.history.append({"epoch": int(self.current_epoch), "loss": self.sums["loss"] / n,
                                 "recon": self.sums["recon"] / n, "quant": self.sums["quant"] / n,
                                 "used": used, "restarts": int(sum(restarts)), "restarts_per_level": restarts,
                                 "seconds": time.perf_counter() - self.epoch_start})
            self._reset_epoch()

        @torch.no_grad()
        def _restart(self, level: int) -> int:
            """Move this epoch's unused codewords of `level` onto random residuals; returns how many moved."""
            dead = (self.usage[level] == 0).nonzero()[:, 0]                       # (n_dead,)
            if dead.numel() == 0 or not self.pool[level]:
                return 0
            pool = torch.cat(self.pool[level])                                    # (P, e)
            pick = torch.randint(pool.shape[0], (dead.numel(),), generator=self.restart_gen)
            cb = self.net.codebooks[level]
            cb[dead.to(cb.device)] = pool[pick].to(cb.device, cb.dtype)
            self._reset_moments(cb, dead.to(cb.device))
            return int(dead.numel())

        def _reset_moments(self, param: torch.nn.Parameter, rows: torch.Tensor) -> None:
            """Forget the optimizer's running moments of restarted codewords."""
            for optimizer in self.trainer.optimizers:
                for value in optimizer.state.get(param, {}).values():
                    if torch.is_tensor(value) and value.shape == param.shape:
                        value[rows] = 0

    return RQVAEModule


@contextmanager
def quiet_lightning() -> Iterator[Any]:
    """Import lightning (deferred: it takes seconds) and silence its banner lines and hints while fitting."""
    with warnings.catch_warnings():
        for message in (".*does not have many workers.*", ".*GPU available but not used.*",
                        ".*LeafSpec.*is deprecated.*"):
            warnings.filterwarnings("ignore", message=message)
        import lightning

        loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield lightning
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


@contextmanager
def restore_determinism() -> Iterator[None]:
    """`Trainer(deterministic=True)` switches torch to deterministic algorithms process-wide; switch it back."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
