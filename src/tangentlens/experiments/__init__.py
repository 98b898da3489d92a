"""Helpers shared by the experiment scripts in the top-level ``analyses/`` folder: the
command line and HTML sections (``cli``), slope fits and scaling figures (``scaling``),
fine-tuning and frozen-feature probes for transfer (``finetune``)."""
