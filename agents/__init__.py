"""The stateful stream agents, one module per stage.

Importing this package registers every agent with the app:
ingest (source topics -> internal events), context (profiles and moments),
offers (moments -> LLM -> kairos.offers: written in offers, delivered
exactly once by delivery); the reference follower (stores and products
updated through a topic); and the Profile API (api).
"""

from agents import api, context, delivery, ingest, offers, reference

__all__ = ["api", "context", "delivery", "ingest", "offers", "reference"]
