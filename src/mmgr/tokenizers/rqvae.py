"""RQ-VAE semantic-ID tokenizer (TIGER, Rajput et al. 2023), trained with Lightning.

An MLP encoder maps an item's (L2-normalised) features to a latent `z` of `e_dim` numbers; `levels` codebooks quantize
it residually (level l picks the codeword nearest to the residual `r_l = z - sum_{i<l} e_i`); an MLP decoder mirrors
the encoder and reconstructs the features from the sum of the chosen codewords. The loss is

    ||x - dec(z_q)||^2 + sum_l ( ||sg[r_l] - e_l||^2 + beta * ||r_l - sg[e_l]||^2 )

(squared norms averaged over items). Residuals are passed on as `r_{l+1} = r_l - sg[e_l]`, so every level's
commitment term pulls the encoder towards the partial sum of codewords (as in the original RQ-VAE). Gradients reach the
encoder through the quantizer by the straight-through estimator (`gradient="ste"`) or the rotation trick
(`gradient="rotation"`, Fifty et al. 2024), applied once to the total `z -> z_q`.

Training details: codebooks start from faiss k-means of the initial encoder's latents (level by level, on residuals);
after every epoch but the last, codewords that no item chose during that epoch are restarted at random residuals of
that level seen in the epoch (`restarts_` counts them); optionally (`sinkhorn=True`, LC-Rec's remedy for collisions)
the last level's assignment is balanced by Sinkhorn-Knopp, during training (per batch) and in `transform` (over the
items transformed together, so a balanced code depends on the batch it is transformed with). Two fits with the same
seed give identical codes on the same machine and device.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmgr.errors import MmgrError
from mmgr.tokenizers.base import TOKENIZERS, SemanticTokenizer, check_features, expand_sizes
from mmgr.tokenizers.collisions import collision_rate
from mmgr.tokenizers.rqvae_network import RQNetwork, distances, sinkhorn_assign

if TYPE_CHECKING:
    from mmgr.config import TokenizerConfig

GRADIENTS = ("ste", "rotation")
CHUNK = 8192                 # items per inference forward pass


@TOKENIZERS.register("rq-vae")
class RQVAE(SemanticTokenizer):
    """Residual-quantized VAE over item features; learned state: the network weights and `codebooks_`."""

    name = "rq-vae"

    def __init__(self, levels: int = 3, codebook_size: int | list[int] = 256, hidden: list[int] | tuple[int, ...] = (
                 512, 256, 128), e_dim: int = 32, beta: float = 0.25, epochs: int = 100, batch_size: int = 1024,
                 lr: float = 1e-3, weight_decay: float = 0.0, gradient: str = "ste", sinkhorn: bool = False,
                 sinkhorn_epsilon: float = 0.003, sinkhorn_iters: int = 50, kmeans_init: bool = True,
                 dead_code_restart: bool = True, normalize: bool = True, seed: int = 0, device: str = "cpu",
                 precision: str = "32-true") -> None:
        self.levels_setting = levels  # `levels` itself is the base class's fitted-state property
        self.codebook_size = list(codebook_size) if isinstance(codebook_size, list | tuple) else codebook_size
        self.hidden = list(hidden)
        self.e_dim = e_dim
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.gradient = gradient
        self.sinkhorn = sinkhorn
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iters = sinkhorn_iters
        self.kmeans_init = kmeans_init
        self.dead_code_restart = dead_code_restart
        self.normalize = normalize
        self.seed = seed
        self.device = device
        self.precision = precision

    @classmethod
    def from_settings(cls, cfg: TokenizerConfig, seed: int) -> RQVAE:
        return cls(levels=cfg.levels, codebook_size=cfg.codebook_size, seed=seed, **cfg.rqvae.model_dump())

    def get_params(self) -> dict[str, Any]:
        return {"levels": self.levels_setting, "codebook_size": self.codebook_size, "hidden": self.hidden,
                "e_dim": self.e_dim, "beta": self.beta, "epochs": self.epochs, "batch_size": self.batch_size,
                "lr": self.lr, "weight_decay": self.weight_decay, "gradient": self.gradient, "sinkhorn": self.sinkhorn,
                "sinkhorn_epsilon": self.sinkhorn_epsilon, "sinkhorn_iters": self.sinkhorn_iters,
                "kmeans_init": self.kmeans_init, "dead_code_restart": self.dead_code_restart,
                "normalize": self.normalize, "seed": self.seed, "device": self.device, "precision": self.precision}

    # ---- fitting ----------------------------------------------------------------------------------------------------

    def fit(self, features: np.ndarray) -> RQVAE:
        """Train the encoder, codebooks and decoder on float32[N, D] features; returns self."""
        sizes = expand_sizes(self.levels_setting, self.codebook_size)
        x = self._prepare(check_features(features, sizes, self.name))           # (N, D)
        self._check_settings()
        start = time.perf_counter()
        from mmgr.tokenizers.rqvae_training import lightning_module, quiet_lightning, restore_determinism

        with quiet_lightning() as L, restore_determinism():
            L.seed_everything(self.seed, workers=True, verbose=False)
            net = RQNetwork(x.shape[1], self.hidden, self.e_dim, sizes)
            if self.kmeans_init:
                net.init_codebooks(torch.from_numpy(x), self.seed)
            module = lightning_module(L)(net, self)
            trainer = L.Trainer(max_epochs=self.epochs, accelerator=self.device, devices=1,
                                enable_checkpointing=False, logger=False, enable_progress_bar=False,
                                enable_model_summary=False, deterministic=True, precision=self.precision)
            trainer.fit(module, train_dataloaders=self._loader(x))
        self.net_ = net.cpu().float().eval()
        self.codebook_sizes_, self.dim_ = sizes, int(x.shape[1])
        self.history_: list[dict[str, Any]] = module.history
        self.restarts_ = int(sum(h["restarts"] for h in self.history_))
        self.fit_seconds_ = time.perf_counter() - start
        codes = self._codes(x)
        self.utilization_ = utilization(codes, sizes)
        self.collision_rate_ = collision_rate(codes)
        return self

    def _check_settings(self) -> None:
        if self.gradient not in GRADIENTS:
            raise MmgrError(f"{self.name}: gradient must be one of {', '.join(GRADIENTS)}, not {self.gradient!r}")
        for key in ("e_dim", "epochs", "batch_size", "sinkhorn_iters"):
            if int(getattr(self, key)) < 1:
                raise MmgrError(f"{self.name}: {key} must be at least 1, not {getattr(self, key)!r}")
        if self.sinkhorn and self.sinkhorn_epsilon <= 0:
            raise MmgrError(f"{self.name}: sinkhorn_epsilon must be positive, not {self.sinkhorn_epsilon!r}")

    def _loader(self, x: np.ndarray) -> torch.utils.data.DataLoader:
        """Shuffled mini-batches in a seeded order."""
        generator = torch.Generator().manual_seed(self.seed)
        data = torch.utils.data.TensorDataset(torch.from_numpy(x))
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size, shuffle=True, generator=generator)

    # ---- inference --------------------------------------------------------------------------------------------------

    def transform(self, features: np.ndarray) -> np.ndarray:
        """int64[N, L] codes; with `sinkhorn=True` the last level is balanced over the N items given together."""
        return self._codes(self._prepare(self._checked_input(features)))

    def inverse_transform(self, codes: np.ndarray) -> np.ndarray:
        """float32[N, D] decoded features for codes int[N, L'] (L' <= L: a prefix gives a coarser reconstruction)."""
        codes = self._checked_codes(codes)                                       # (N, L')
        out = []
        with torch.no_grad():
            for lo in range(0, codes.shape[0], CHUNK):
                part = torch.from_numpy(codes[lo:lo + CHUNK])
                zq = sum(cb[part[:, level]] for level, cb in enumerate(self.net_.codebooks[:codes.shape[1]]))
                out.append(self.net_.decoder(zq).numpy())                      # (B, D)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim_), np.float32)

    def candidates(self, features: np.ndarray, k: int) -> np.ndarray:
        """int64[N, min(k, K_last)]: nearest last-level codewords to each item's residual after L-1 levels."""
        x = self._prepare(self._checked_input(features))
        k = min(int(k), self.codebook_sizes_[-1])
        if k < 1:
            raise MmgrError(f"{self.name}: candidates needs k >= 1")
        out = []
        with torch.no_grad():
            for lo in range(0, x.shape[0], CHUNK):
                residual = self.net_.encoder(torch.from_numpy(x[lo:lo + CHUNK]))  # (B, e)
                for cb in self.net_.codebooks[:-1]:
                    residual = residual - cb[distances(residual, cb).argmin(1)]
                dist = distances(residual, self.net_.codebooks[-1])              # (B, K)
                out.append(dist.topk(k, dim=1, largest=False).indices.numpy())
        return np.concatenate(out).astype(np.int64) if out else np.zeros((0, k), np.int64)

    def _codes(self, x: np.ndarray) -> np.ndarray:
        """int64[N, L] for prepared features; the last level is balanced over all N when `sinkhorn` is on."""
        codes, last = [], []
        with torch.no_grad():
            for lo in range(0, x.shape[0], CHUNK):
                z = self.net_.encoder(torch.from_numpy(x[lo:lo + CHUNK]))       # (B, e)
                part, dist = self.net_.quantize(z)
                codes.append(part)
                last.append(dist)
            codes_t = torch.cat(codes) if codes else torch.zeros((0, len(self.codebook_sizes_)), dtype=torch.long)
            if self.sinkhorn and codes:
                codes_t[:, -1] = sinkhorn_assign(torch.cat(last), self.sinkhorn_epsilon, self.sinkhorn_iters)
        return codes_t.numpy().astype(np.int64)

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """float32[N, D], L2-normalised rows when `normalize` is set."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def _checked_input(self, features: np.ndarray) -> np.ndarray:
        if not hasattr(self, "net_"):
            raise MmgrError(f"{self.name}: fit the tokenizer first")
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim_:
            raise MmgrError(f"{self.name}: expected features of shape (items, {self.dim_}), got {x.shape}")
        if not np.isfinite(x).all():
            raise MmgrError(f"{self.name}: features contain NaN or infinite values; re-run `mmgr encode`")
        return x

    def _checked_codes(self, codes: np.ndarray) -> np.ndarray:
        if not hasattr(self, "net_"):
            raise MmgrError(f"{self.name}: fit the tokenizer first")
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or not 1 <= codes.shape[1] <= len(self.codebook_sizes_):
            raise MmgrError(f"{self.name}: expected codes of shape (items, 1..{len(self.codebook_sizes_)}), "
                            f"got {codes.shape}")
        sizes = np.asarray(self.codebook_sizes_[:codes.shape[1]])
        if codes.size and ((codes < 0).any() or (codes >= sizes).any()):
            raise MmgrError(f"{self.name}: codes out of range for codebook sizes {self.codebook_sizes_}")
        return codes

    # ---- persistence ------------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "history": self.history_, "restarts": self.restarts_,
                "utilization": self.utilization_, "collision_rate": self.collision_rate_,
                "fit_seconds": self.fit_seconds_}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {key: value.detach().cpu().numpy() for key, value in self.net_.state_dict().items()}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        net = RQNetwork(self.dim_, self.hidden, self.e_dim, self.codebook_sizes_)
        net.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in arrays.items()})
        self.net_ = net.eval()
        self.history_ = list(state.get("history", []))
        self.restarts_ = int(state.get("restarts", 0))
        self.utilization_ = list(state.get("utilization", []))
        self.collision_rate_ = float(state.get("collision_rate", float("nan")))
        self.fit_seconds_ = float(state.get("fit_seconds", float("nan")))


# ---- the network ----------------------------------------------------------------------------------------------------


def utilization(codes: np.ndarray, sizes: list[int]) -> list[float]:
    """Per level: distinct codes used / codebook size."""
    codes = np.asarray(codes)
    return [len(np.unique(codes[:, level])) / size for level, size in enumerate(sizes)]
