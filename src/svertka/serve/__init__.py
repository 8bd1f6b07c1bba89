"""`svertka serve`: the local explorer in the browser.

An ASGI app (Starlette under uvicorn) over the same functions the command line
uses: the zoo table and chart, a model's per-layer table, block diagram and
receptive fields, the conv arithmetic, predictions and feature maps of a trained
run, and live learning curves of every run under ``--runs``. The page (static/)
is packaged with svertka and needs no network.

Modules: ``app`` (routes, limits, errors as JSON), ``models`` (zoo and model
pages), ``runs`` (run folders under --runs, predictions), ``uploads`` (size
limit), ``commands`` (the CLI subcommand; imports nothing heavy).
"""
