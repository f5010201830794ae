"""The RQ-VAE network (`tokenizers/rqvae.py` fits it, `tokenizers/rqvae_training.py` trains it): MLP encoder and
decoder, residual codebooks initialised by k-means, the distances, rotation trick and Sinkhorn balancing they use."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RESTART_POOL = 16384         # residuals per level kept from the epoch to restart dead codewords from
KMEANS_POINTS_PER_CODE = 64  # latents per codeword sampled for the k-means initialisation


def _mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers through `widths` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQNetwork(nn.Module):
    """Encoder, residual codebooks and decoder."""

    def __init__(self, dim: int, hidden: list[int], e_dim: int, sizes: list[int]) -> None:
        super().__init__()
        self.encoder = _mlp([dim, *hidden, e_dim])
        self.decoder = _mlp([e_dim, *reversed(hidden), dim])
        self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(k, e_dim) / e_dim ** 0.5) for k in sizes])

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest-codeword codes (B, L) for latents z (B, e) and the last level's distances (B, K_last)."""
        codes, residual, dist = [], z.float(), z.new_zeros(0)
        for cb in self.codebooks:
            dist = distances(residual, cb.float())                                 # (B, K)
            idx = dist.argmin(1)                                                    # (B,)
            codes.append(idx)
            residual = residual - cb[idx].float()
        return torch.stack(codes, 1), dist

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, seed: int) -> None:
        """Faiss k-means of the initial latents, level by level on the residuals."""
        import faiss

        n = min(x.shape[0], KMEANS_POINTS_PER_CODE * max(cb.shape[0] for cb in self.codebooks))
        pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
        residual = self.encoder(x[pick]).numpy().astype(np.float32)                # (n, e)
        for level, cb in enumerate(self.codebooks):
            kmeans = faiss.Kmeans(residual.shape[1], cb.shape[0], niter=20, seed=seed + level, verbose=False,
                                  min_points_per_centroid=1)
            kmeans.train(np.ascontiguousarray(residual))
            centroids = torch.from_numpy(kmeans.centroids.astype(np.float32))      # (K, e)
            cb.copy_(centroids)
            residual = residual - kmeans.centroids[kmeans.index.search(residual, 1)[1][:, 0]]


def distances(r: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances (B, K) between rows of r (B, e) and codewords cb (K, e)."""
    return (r * r).sum(1, keepdim=True) - 2 * r @ cb.T + (cb * cb).sum(1)


def rotate_to(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """The rotation trick: the value of `tgt` (B, e), with gradient to `src` (B, e) through a fixed rotation+scale.

    R = I - 2 w w^T + 2 q u^T with u = src/|src|, q = tgt/|tgt|, w = (u + q)/|u + q| maps u to q; the output is
    sg[|tgt|/|src| R] src, so the backward pass rotates the decoder's gradient instead of copying it (Fifty et al.)."""
    eps = 1e-8
    src_norm = src.norm(dim=1, keepdim=True).clamp_min(eps)                       # (B, 1)
    tgt_norm = tgt.norm(dim=1, keepdim=True).clamp_min(eps)
    u = (src / src_norm).detach()
    q = (tgt / tgt_norm).detach()
    w = F.normalize(u + q, dim=1, eps=eps).detach()
    rotated = src - 2 * (src * w).sum(1, keepdim=True) * w + 2 * (src * u).sum(1, keepdim=True) * q
    return rotated * (tgt_norm / src_norm).detach()


def sinkhorn_assign(dist: torch.Tensor, epsilon: float, iters: int) -> torch.Tensor:
    """Balanced codes (B,) from distances (B, K) by Sinkhorn-Knopp (LC-Rec's recipe).

    Distances are scaled to [-1, 1], turned into a transport plan exp(-d / epsilon) whose columns and rows are
    alternately normalised (to 1/K and 1/B), and each row takes its most probable code. Runs in float64, in the
    exponential domain while exp(1 / epsilon) fits a float64, else in the (slower) log domain."""
    d = dist.double()
    mid = (d.max() + d.min()) / 2
    scaled = -(d - mid) / ((d.max() - mid) + 1e-5) / epsilon                   # (B, K) in [-1/eps, 1/eps]
    b, k = scaled.shape
    if 1 / epsilon < 700:
        q = torch.exp(scaled)
        q /= q.sum()
        for _ in range(iters):
            q /= q.sum(0, keepdim=True) * k                                     # columns sum to 1/K
            q /= q.sum(1, keepdim=True) * b                                     # rows sum to 1/B
        return q.argmax(1)
    for _ in range(iters):
        scaled = scaled - torch.logsumexp(scaled, dim=0, keepdim=True) - np.log(k)
        scaled = scaled - torch.logsumexp(scaled, dim=1, keepdim=True) - np.log(b)
    return scaled.argmax(1)


# ---- code statistics ------------------------------------------------------------------------------------------------
