"""The LLM layer: client, prompts, context selection, guardrails, server."""
