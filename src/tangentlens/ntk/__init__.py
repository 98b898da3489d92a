"""Empirical NTK, closed-form kernel regression, and analytic infinite-width kernels."""

from tangentlens.ntk.analytic import infinite_width_predict, nngp_kernel, ntk_kernel
from tangentlens.ntk.empirical import IMPLEMENTATIONS, MODES, empirical_ntk
from tangentlens.ntk.regression import KernelRegression, kernel_regression, solve_psd

__all__ = ["IMPLEMENTATIONS", "MODES", "KernelRegression", "empirical_ntk",
           "infinite_width_predict", "kernel_regression", "nngp_kernel", "ntk_kernel",
           "solve_psd"]
