"""Hooks of any ``nn.Module``: the HookPoints of a HookedRootModule, or named submodules.

A plain module (a user's ResNet, a ViT) is hooked by name: the hook ``layer1.0.conv1`` is
the output of the submodule of that name, captured by a forward hook. A hook is valid when
its module runs exactly once per forward and returns a tensor (a module called twice, like
torchvision's shared ``relu`` in a BasicBlock, has no single activation; hook its parent
block instead). The default hooks are the valid *leaf* modules, in forward order.
``probe.hooks`` entries are names or ``fnmatch`` patterns (``layer*.relu``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

import torch
from torch import nn


def is_hooked(model: nn.Module) -> bool:
    """Whether ``model`` is a HookedRootModule-like model (``hook_dict`` + ``run_with_cache``)."""
    return hasattr(model, "hook_dict") and hasattr(model, "run_with_cache")


def _calls(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """{submodule name: calls with a tensor output} over one no-grad forward, in firing order."""
    calls: dict[str, int] = {}
    bad: set[str] = set()

    def record(name: str):
        def hook(_m, _i, out):
            if isinstance(out, torch.Tensor):
                calls[name] = calls.get(name, 0) + 1
            else:
                bad.add(name)
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {n: c for n, c in calls.items() if n not in bad}


class HookSet:
    """The hooks of one model: ``valid`` (forward order), ``default`` and ``select(patterns)``."""

    def __init__(self, model: nn.Module, x: torch.Tensor):
        if is_hooked(model):
            names = getattr(model, "hook_names", None)
            self.valid = list(names) if names is not None else list(model.hook_dict)
            self.default, self.repeated = list(self.valid), {}
            return
        calls = _calls(model, x)
        leaves = {n for n, m in model.named_modules() if n and not any(True for _ in m.children())}
        self.valid = [n for n, c in calls.items() if c == 1]
        self.repeated = {n: c for n, c in calls.items() if c > 1}
        self.default = [n for n in self.valid if n in leaves]
        if not self.valid:
            raise ValueError(f"{type(model).__name__} has no submodule that runs once per "
                             "forward with a tensor output, so nothing can be hooked")

    def select(self, patterns: Sequence[str] | None) -> list[str]:
        """The valid hooks named or matched by ``patterns`` (None: the defaults), forward order."""
        if not patterns:
            return list(self.default)
        chosen: set[str] = set()
        for p in patterns:
            if p in self.repeated:
                raise ValueError(f"probe.hooks: module {p!r} runs {self.repeated[p]} times per "
                                 "forward, so it has no single activation; hook its parent "
                                 "module instead")
            hit = [n for n in self.valid if n == p or fnmatchcase(n, p)]
            if not hit:
                raise ValueError(f"probe.hooks: {p!r} matches no hook; valid: "
                                 f"{', '.join(self.valid)}")
            chosen.update(hit)
        return [n for n in self.valid if n in chosen]


def run_with_cache(model: nn.Module, x: torch.Tensor,
                   names: Iterable[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(output, {hook: activation}) of one no-grad forward, for hooked and plain modules."""
    names = list(names)
    if is_hooked(model):
        with torch.no_grad():
            out, cache = model.run_with_cache(x, names_filter=names)
        return out, {h: cache[h] for h in names}
    modules = dict(model.named_modules())
    unknown = [h for h in names if h not in modules]
    if unknown:
        raise KeyError(f"unknown hook(s) {unknown}; valid: module names of {type(model).__name__}")
    acts: dict[str, torch.Tensor] = {}
    handles = [modules[h].register_forward_hook(
        lambda _m, _i, out, h=h: acts.__setitem__(h, out.detach())) for h in names]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, acts
