"""The Faust app, topics, event schemas, codecs, settings and metrics."""
