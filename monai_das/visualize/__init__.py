"""Plots and montages of sampling decisions (numpy/torch images for TensorBoard, matplotlib figures for reports)."""

from __future__ import annotations

from .sampling_plots import frames_montage, plot_sampling_decisions, sampling_matrix_image, soft_entropy, stack_images

__all__ = ["frames_montage", "plot_sampling_decisions", "sampling_matrix_image", "soft_entropy", "stack_images"]
