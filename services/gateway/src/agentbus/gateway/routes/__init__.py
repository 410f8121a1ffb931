"""The gateway's own HTTP API (native chat, documents, analytics, the RAG app's settings,
history, versions and evaluations, the web app's routes), one router per module. The protocol
adapters (langgraph/, aisdk/, openai/, mcp/, a2a/) and auth/ are packages beside this one."""
