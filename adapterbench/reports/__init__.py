"""Reports and regression comparison over run records (schema: :mod:`adapterbench.schema`; frames:
:mod:`adapterbench.results`).

``collect``   which records count and which may be averaged together (comparable groups, configurations)
``aggregate`` one table per comparable group (pandas groupby): mean ± std over seeds, best values, Pareto set
``charts``    matplotlib charts (Pareto, memory/throughput, evaluation points, rank maps, trends), as declared
``learned``   did the runs learn: k of n seeds per configuration with its exact interval (``learned_frame``)
``pairs``     the answer's pairs matrix over the configurations that learned
``svgcharts`` the HTML page's inline SVG Pareto chart (hover labels, visible names that never overlap)
``model``     the report model: sections, tables as formatted cells, legend, failed runs, charts drawn
``markdown``/``html``/``csvfile``  the three writers of the report model
``build``     ``bench report``: read, build the model, write the folder
``compare``   ``bench compare``: regressions of CURRENT against BASELINE, for CI
``units``     human units, point labels, the one-line run summary
``cli``       argparse glue the main command line wires in
"""
