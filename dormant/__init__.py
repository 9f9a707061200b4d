"""dormant: find what a neural network hides.

Folders are capabilities:

- ``dormant.llm``: dormant chat models (weight forensics, behaviour engine, trigger search).
- ``dormant.net``: opaque integer networks (inert loading, structure, decompilation, inversion).
- ``dormant.zoo``: deterministic builders of test subjects (planted-backdoor chat models, hash networks).
- ``dormant.ledger``: the SQLite run ledger every result-producing command writes to.
- ``dormant.report``: console output, JSON and plots shared by every command.
"""

__version__ = "0.1.0"
