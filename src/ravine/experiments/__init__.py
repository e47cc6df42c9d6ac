"""``ravine compare``: common empirical claims about optimizers, rerun on offline data and judged honestly.

Modules: ``data`` (digits, the standard library as text), ``models``, ``tasks``, ``train`` (one run),
``metrics``, ``stats`` (paired intervals and verdicts), ``claims`` (the experiments), ``tuning`` (the lr
sweep), ``runner``, ``report`` and ``cli``. Needs the ``compare`` extra (scikit-learn, matplotlib, rich).
"""
