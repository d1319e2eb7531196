"""ECGBench, the PULSE paper's benchmark: readers for the released files, the paper's scoring
(quirks included) and a strict one, the LLM judge, the runner and a miniature builder.

    python -m training.evaluate --benchmark ecgbench --data ECGBench/ --subset all --model M
    python -m training.ecgbench.build --out /tmp/mini-ecgbench       # a miniature, same layout

Modules: ``subsets`` (the nine subsets and the paper's numbers), ``data`` (reader), ``paper`` and
``strict`` (the two scorings), ``judge`` (LLM judge, cache, agreement), ``run`` (answer, score,
table), ``build`` (the miniature). See docs/ecgbench.md.
"""
