"""Models through LiteLLM, and the offline default provider `local/...` (`agentbus.local_models`).

Import `agentbus.runtime.llm.client` rather than `litellm` directly: it sets LiteLLM up for an
offline machine (no cost-map download) and registers the local provider once.
"""
