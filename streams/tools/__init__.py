"""The commands around the worker: the CLI, the demo, producers of real and
synthetic traffic, the offers tail, the report, and the embedded broker with
the child processes it runs."""
