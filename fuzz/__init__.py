"""svertka's own fuzz suite: mutated copies of valid files, fed to the public
loaders in worker processes that observe crashes instead of suffering them.

- ``seeds``: valid files of every format svertka reads, made by svertka itself;
- ``mutate``: bit flips, truncation, insertion, extreme header fields, type
  confusion in JSON/TOML/pickles, deep nesting, gzip and PNG bombs, pickles
  that reach for globals;
- ``targets``: one function per parser, as a user's command would call it;
- ``runner``: the worker pool and the outcome table (accepted, svertka error,
  other exception, hang, memory, killed by a signal).

Run ``python -m fuzz --help`` (``make fuzz`` runs the long campaign).
"""
