"""Activation maximization: gradient ascent on the input with an L2 penalty, an L2 budget
and jitter (random shifts of the spatial axes), for image (C, H, W), signal and vector inputs."""

from __future__ import annotations

from collections.abc import Callable

import torch


def maximize_activation(objective: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, *,
                        steps: int = 200, lr: float = 0.1, l2: float = 1e-3, jitter: int = 1,
                        budget: float | None = None, seed: int = 0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximize ``objective(x)`` (one value per row of x) over x from ``x0``, regularized.

    Projected, normalized gradient ascent with step η_t = lr·(1 − t/steps): each row moves
    η_t·budget (η_t with no budget) along its own objective-gradient direction, decays by
    (1 − 2η_t·l2) (the L2 penalty l2·‖x‖² as weight decay, so a zero gradient leaves x in
    place), and is projected back into the ball ‖x‖₂ ≤ ``budget``. Each step sees x rolled
    by a random shift in [−jitter, jitter] along every spatial axis (axes after the channel
    axis, none for flat vectors). Returns (x, objective(x)), detached.
    """
    gen = torch.Generator().manual_seed(seed)
    spatial, scale = tuple(range(2, x0.ndim)), 1.0 if budget is None else budget
    x = _project(x0.detach().clone(), budget)
    for t in range(steps):
        x.requires_grad_(True)
        shifts = torch.randint(-jitter, jitter + 1, (len(spatial),), generator=gen).tolist()
        xj = torch.roll(x, shifts, spatial) if jitter and spatial else x
        (grad,) = torch.autograd.grad(objective(xj).sum(), x)
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
        eta = lr * (1 - t / steps)
        with torch.no_grad():
            x = _project(x * (1 - 2 * eta * l2) + eta * scale * grad / norms, budget)
    with torch.no_grad():
        return x, objective(x).detach()


def _project(x: torch.Tensor, budget: float | None) -> torch.Tensor:
    """Rows of x scaled into the L2 ball of radius ``budget`` (unchanged when None)."""
    if budget is None:
        return x
    norms = x.flatten(1).norm(dim=1).clamp_min(1e-12)
    return x * (budget / norms).clamp(max=1.0).view(-1, *[1] * (x.ndim - 1))
