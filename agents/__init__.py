"""The stateful stream agents, one module per stage.

Importing this package registers every agent with the app:
ingest (source topics -> internal events), context (profiles and moments),
offers (moments -> LLM -> kairos.offers).
"""

from agents import context, ingest, offers

__all__ = ["context", "ingest", "offers"]
