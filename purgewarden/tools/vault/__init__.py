"""Piiano Vault tools: list collections and objects, delete objects in bulk, prune archived data (GC).

Deletion works on *selections*, not id dumps: explicit `ids` for a handful, or every object of a state
(optionally narrowed by a Vault search) that the server resolves itself (`selection`). Both destructive
operations are declared once (`delete.DeleteObjects`, `prune.PruneArchived`) and run by the safety
kernel; `toolset` collects every tool of the modules, and importing this package registers them all.
"""

from purgewarden.tools.vault import delete, prune, reads
from purgewarden.tools.vault.common import toolset

__all__ = ["delete", "prune", "reads", "toolset"]
