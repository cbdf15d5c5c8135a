"""The stateful stream agents, one module per stage.

ingest (source topics -> internal events), context (profiles and moments),
offers (moments -> LLM -> kairos.offers: written in offers, delivered
exactly once by delivery); the reference follower (stores and products
updated through a topic); and the Profile API (api).

Importing the package registers nothing: the stages are wired into an app
by the worker, so that importing one helper module (a profile function, a
moment rule) does not import every stage and the LLM layer with it.
"""
