"""Katapult tools: organizations, the trash and its purge, buckets and their presigned URLs.

`toolset` collects the tools of every module; importing this package registers them all.
"""

from purgewarden.tools.katapult import buckets, purge, trash
from purgewarden.tools.katapult.common import toolset

__all__ = ["buckets", "purge", "toolset", "trash"]
