"""The first-order Taylor model of a network around θ0, with hidden-activation views.

``Linearized`` wraps a model whose parameters are the *trainable* θ (starting at θ0);
θ0 is kept as frozen buffers. Its output is

    f_lin(x; θ) = f(x; θ0) + J(x; θ0)(θ − θ0),

never from a materialized Jacobian. Gradients flow to θ by reverse-over-forward
differentiation, so any torch optimizer (with weight decay acting on θ, exactly as for
the ordinary network) trains it. Two engines, chosen by ``mode``:
  - ``jvp``: one forward-mode ``torch.func.jvp`` of the model; any nn.Module;
  - ``structured``: the hand-derived tangent pass of ``tangentlens.tangent`` (MLP and
    CNN), θ0 primals without autograd, cacheable for a fixed input set
    (``cache_primals``);
  - ``auto`` (default): ``structured`` when the model supports it and has no forward
    hooks attached, else ``jvp``.

Two views of every hook h:
  - ``tangent``: h(x; θ0) + J_h(x; θ0)(θ − θ0), the same jvp that gives the output;
  - ``network``: h(x; θ), the real network evaluated at the linearized weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.func import functional_call, jvp

from . import tangent

VIEWS = ("tangent", "network")
MODES = ("auto", "jvp", "structured")
CACHE_BYTES = 2**30  # cache_primals keeps an input set's θ0 primals up to this size


def _mangle(name: str) -> str:
    return name.replace(".", "__")


class Linearized(nn.Module):
    """First-order Taylor expansion of ``model`` around ``params0`` (see module docstring)."""

    def __init__(self, model: nn.Module, params0: Mapping[str, torch.Tensor] | None = None,
                 mode: str = "auto"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; valid: {', '.join(MODES)}")
        self._steps, why = tangent.plan(model)
        if mode == "structured" and self._steps is None:
            raise ValueError(f"mode='structured' needs tangentlens' MLP or CNN ({why}); "
                             "use mode='jvp' or 'auto'")
        self.mode = mode
        self._cache: tuple[tuple, tangent.PrimalCache] | None = None
        self.model = model
        names = [n for n, _ in model.named_parameters()]
        if params0 is None:
            params0 = {n: p.detach() for n, p in model.named_parameters()}
        missing = sorted(set(names) - set(params0))
        extra = sorted(set(params0) - set(names))
        if missing or extra:
            raise KeyError(f"params0 does not match the model: missing {missing}, unexpected {extra}; "
                           f"valid names: {names}")
        self.theta0 = nn.Module()
        with torch.no_grad():
            for n, p in model.named_parameters():
                t = params0[n].detach().to(p.device, p.dtype)
                if t.shape != p.shape:
                    raise ValueError(f"params0[{n!r}] has shape {tuple(t.shape)}; the model has {tuple(p.shape)}")
                self.theta0.register_buffer(_mangle(n), t.clone())
                p.copy_(t)  # θ starts at θ0
        self._names = names

    @property
    def engine(self) -> str:
        """The engine the next call uses: ``structured`` or ``jvp`` (see ``mode``)."""
        if self.mode == "jvp" or self._steps is None:
            return "jvp"
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in self.model.modules())
        if hooked and self.mode == "structured":
            raise RuntimeError("mode='structured' ignores forward hooks and the model has some; "
                               "remove them or use mode='auto'/'jvp'")
        return "jvp" if hooked else "structured"

    def _cache_key(self, x: torch.Tensor) -> tuple:
        """Changes when θ0 or the cached inputs ``x`` are replaced or modified in place."""
        return (x._version, *((t.data_ptr(), t._version) for t in self.theta0.buffers()))

    def cache_primals(self, x: torch.Tensor, max_bytes: int = CACHE_BYTES) -> bool:
        """Keep the θ0 primals of the input set ``x`` (e.g. a whole training set): later
        batches made of its rows skip the primal pass. Only for the structured engine and
        when they take at most ``max_bytes``; returns whether they are kept. Rebuilt if
        θ0 (e.g. by ``load_state_dict``) or ``x`` changes in place."""
        if self.engine != "structured":
            return False
        sample = tangent.primals(self._steps, self.params0(), x[:1])
        if tangent.primal_bytes(sample, len(x)) > max_bytes:
            self._cache = None
            return False
        self._cache = (self._cache_key(x), tangent.PrimalCache(self._steps, self.params0(), x))
        return True

    def _primals(self, x: torch.Tensor) -> tangent.Primals:
        if self._cache is not None:
            key, cache = self._cache
            if key != self._cache_key(cache.x):
                cache = tangent.PrimalCache(self._steps, self.params0(), cache.x)
                self._cache = (self._cache_key(cache.x), cache)
            found = cache.lookup(x)
            if found is not None:
                return found
        return tangent.primals(self._steps, self.params0(), x)

    @property
    def hook_names(self) -> list[str]:
        """The model's hooks: its HookPoints, or for a plain module its leaf submodules."""
        names = getattr(self.model, "hook_names", None)
        if names is not None:
            return list(names)
        if hasattr(self.model, "hook_dict"):
            return list(self.model.hook_dict)
        return [n for n, m in self.model.named_modules() if n and next(m.children(), None) is None]

    def params0(self) -> dict[str, torch.Tensor]:
        """θ0 as a name → tensor dict (the expansion point)."""
        return {n: getattr(self.theta0, _mangle(n)) for n in self._names}

    def params(self) -> dict[str, torch.Tensor]:
        """The trainable θ as a name → parameter dict."""
        return dict(self.model.named_parameters())

    def delta(self) -> dict[str, torch.Tensor]:
        """Δθ = θ − θ0 (differentiable with respect to θ)."""
        p0 = self.params0()
        return {n: p - p0[n] for n, p in self.model.named_parameters()}

    def _jvp(self, x: torch.Tensor, hooks: Iterable[str] = ()):
        """(f(θ0), JΔθ, {hook: h(θ0)}, {hook: J_h Δθ}) from one jvp."""
        hooks = list(hooks)
        modules = dict(self.model.named_modules())
        unknown = [h for h in hooks if h not in modules]
        if unknown:
            raise KeyError(f"unknown hook(s) {unknown}; valid: {self.hook_names}")

        def f(params):
            acts: dict[str, torch.Tensor] = {}
            handles = [modules[h].register_forward_hook(
                lambda _m, _i, out, h=h: acts.__setitem__(h, out)) for h in hooks]
            try:
                out = functional_call(self.model, params, (x,))
            finally:
                for handle in handles:
                    handle.remove()
            return out, acts

        (out0, acts0), (dout, dacts) = jvp(f, (self.params0(),), (self.delta(),))
        return out0, dout, acts0, dacts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.engine == "structured":
            p = self._primals(x)
            return p["out"] + tangent.tangent(self._steps, self.params(), self.params0(), p)
        out0, dout, _, _ = self._jvp(x)
        return out0 + dout

    def run_with_cache(self, x: torch.Tensor, view: str = "tangent",
                       names_filter: Iterable[str] | str | None = None):
        """(output, ActivationCache) for ``view`` in ("tangent", "network").

        The output is always the linearized output; the cache holds the chosen view of
        every hook in ``names_filter`` (default: all hooks). Activations are detached.
        The cache is an ActivationCache for a HookedRootModule, else a dict.
        """
        from .models.hooks import is_hooked, run_with_cache

        if view not in VIEWS:
            raise ValueError(f"view={view!r}; valid: {', '.join(VIEWS)}")
        if names_filter is None:
            hooks = self.hook_names
        elif isinstance(names_filter, str):
            hooks = [names_filter]
        else:
            hooks = list(names_filter)
        structured = self.engine == "structured" and set(hooks) <= set(self.hook_names)
        with torch.no_grad():
            if structured:
                acts0, dacts = {}, {}
                p = tangent.primals(self._steps, self.params0(), x, acts0)
                out0 = p["out"]
                dout = tangent.tangent(self._steps, self.params(), self.params0(), p, dacts)
            else:
                out0, dout, acts0, dacts = self._jvp(x, hooks if view == "tangent" else ())
            if view == "tangent":
                cache = {h: acts0[h] + dacts[h] for h in hooks}
            else:
                cache = run_with_cache(self.model, x, hooks)[1]
        if not is_hooked(self.model):
            return out0 + dout, cache
        from transformer_lens import ActivationCache

        return out0 + dout, ActivationCache(cache, self.model)


def linearize(model: nn.Module, params0: Mapping[str, torch.Tensor] | None = None,
              mode: str = "auto") -> Linearized:
    """Return the first-order Taylor model of ``model`` around ``params0`` (default: its
    current parameters; any checkpoint θ_t works). The model's own parameters become the
    trainable θ of the linearized model and are set to ``params0``. ``mode``: see
    ``Linearized``.

    >>> import torch
    >>> from tangentlens import build_model, linearize, load_config
    >>> model = build_model(load_config(None, ["model.width=32"]).model, (8,), 3, seed=0)
    >>> lin, x = linearize(model), torch.randn(4, 8)
    >>> torch.allclose(lin(x), model(x))        # at θ = θ0 the Taylor model is the network
    True
    >>> out, cache = lin.run_with_cache(x, view="tangent")
    >>> cache["layers.0.hook_post"].shape
    torch.Size([4, 32])
    """
    return Linearized(model, params0, mode)
