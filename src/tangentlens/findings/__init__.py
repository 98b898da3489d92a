"""The findings document: every question of the toolkit answered by its own commands.

``build.findings`` runs or reuses the experiments (``experiments``), answers each question
of ``registry.QUESTIONS`` (one module per family: ``representations`` Q1–Q3, ``span`` Q4,
``transfer`` Q5, ``scaling`` Q6–Q8 with ``limits`` for Q8's infinite-width limits,
``spawn`` Q9) as a section of estimates over seeds with verdicts (``stats``, ``common``),
and renders JSON → markdown and HTML (``render``).
"""
