"""Model calls through the LiteLLM Router with the local provider (real model, no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from agentbus.orchestrator.model_calls import ModelConfigError, complete, load_router
from agentbus.orchestrator.tools import TOOLS


def config(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_failing_primary_is_served_by_the_fallback_and_says_so(tmp_path: Path) -> None:
    router = load_router(
        config(
            tmp_path,
            {
                "model_list": [
                    {"model_name": "fast", "litellm_params": {"model": "local/no-such-model"}},
                    {"model_name": "deep", "litellm_params": {"model": "local/extractive"}},
                ],
                "router_settings": {"num_retries": 0, "fallbacks": [{"fast": ["deep"]}]},
            },
        )
    )
    tokens: list[str] = []

    async def sink(text: str) -> None:
        tokens.append(text)

    call = await complete(
        router, "fast", [{"role": "user", "content": "hello there"}], on_token=sink
    )
    assert call.model == "local/extractive" and call.fallback is True
    assert "".join(tokens) == call.content and call.content
    # Streamed calls still report usage.
    assert call.input_tokens > 0 and call.output_tokens > 0 and call.ttft_ms is not None


async def test_default_config_serves_the_groups(tmp_path: Path) -> None:
    router = load_router()
    call = await complete(
        router,
        "fast",
        [{"role": "user", "content": "who knows Rust?"}],
        tools=[t.schema() for t in TOOLS],
    )
    assert call.model == "local/extractive" and call.fallback is False
    assert call.tool_calls[0]["function"]["name"] == "find_people_by_skill"
    assert '"Rust"' in call.tool_calls[0]["function"]["arguments"]


@pytest.mark.parametrize("text", ["model_list: 3", ": : :", "router_settings: {}"])
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ModelConfigError, match=r"models\.yaml"):
        load_router(path)


def test_a_missing_config_is_named_not_replaced(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=r"absent\.yaml: file not found"):
        load_router(tmp_path / "absent.yaml")
