"""Reports and regression comparison over run records (schema: :mod:`adapterbench.harness.records`).

``collect``  which records count and which may be averaged together (comparable groups, configurations)
``aggregate`` one table per comparable group: mean ± std over seeds, best values, Pareto set
``charts``   matplotlib charts (Pareto, memory/throughput, AdaLoRA ranks, DyLoRA ranks, trends)
``build``    ``bench report``: the report folder (report.md, report.html, table.csv, charts)
``markdown``/``html``  the two renderings of one report model
``compare``  ``bench compare``: regressions of CURRENT against BASELINE, for CI
``cli``      argparse glue the main command line wires in
"""
