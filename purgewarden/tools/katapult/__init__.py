"""Katapult tools: organizations, the trash and its purge, buckets and their presigned URLs.

`toolset` collects the tools of both modules; importing this package registers them all.
"""

from purgewarden.tools.katapult import buckets, trash
from purgewarden.tools.katapult.common import toolset

__all__ = ["buckets", "toolset", "trash"]
