"""The streaming layer.

At this level, what every part shares: settings, event schemas, codecs,
keys, metrics, reference data and the error tree. ``runtime/`` is what a
worker runs on (the Faust app, topics, transport, changelog, acks);
``tools/`` the commands around it (CLI, demo, producers, tail, report,
embedded broker).
"""
