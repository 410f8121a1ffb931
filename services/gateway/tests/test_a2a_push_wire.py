"""A2A push notification configs on the wire, in both protocol versions (pure: no I/O). The
encodings are read back with a2a-sdk's own types (v1.0 protobuf JSON, v0.3 pydantic), so a
shape the SDK would not parse fails here; the e2e test (test_a2a_push.py) drives the client."""

from __future__ import annotations

from typing import Any

import pytest
from a2a.compat.v0_3 import types as types_v03
from a2a.types import StreamResponse, TaskPushNotificationConfig, TaskState
from google.protobuf import json_format

from agentbus.gateway.a2a.push import next_step
from agentbus.gateway.a2a.wire import (
    NOTIFIABLE,
    TOKEN_HEADER,
    V03_METHODS,
    V1_METHODS,
    Encoder,
    PushConfig,
    RpcError,
    TaskView,
    parse_push_ref,
    parse_push_set,
    parse_send,
    push_headers,
)

FULL = PushConfig(
    url="http://127.0.0.1:9/hook",
    id="c1",
    task_id="t1",
    token="secret-token",
    scheme="Bearer",
    credentials="abc",
)


def test_method_names_of_both_versions() -> None:
    assert {k for k, v in V1_METHODS.items() if v.startswith("push_")} == {
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
    }
    assert {k for k, v in V03_METHODS.items() if v.startswith("push_")} == {
        f"tasks/pushNotificationConfig/{op}" for op in ("set", "get", "list", "delete")
    }


def test_set_params_in_each_shape() -> None:
    v1 = parse_push_set(
        {
            "taskId": "t1",
            "id": "c1",
            "url": "http://127.0.0.1:9/hook",
            "token": "secret-token",
            "authentication": {"scheme": "Bearer", "credentials": "abc"},
        },
        "1.0",
    )
    assert v1 == FULL
    v03 = parse_push_set(
        {
            "taskId": "t1",
            "pushNotificationConfig": {
                "id": "c1",
                "url": "http://127.0.0.1:9/hook",
                "token": "secret-token",
                "authentication": {"schemes": ["Bearer", "Basic"], "credentials": "abc"},
            },
        },
        "0.3",
    )
    assert v03 == FULL  # the first scheme is the one used, as the SDK converts it
    bare = parse_push_set({"taskId": "t1", "url": "http://x/h"}, "1.0")
    assert (bare.id, bare.token, bare.scheme, bare.credentials) == ("", None, None, None)


@pytest.mark.parametrize(
    ("params", "version"),
    [
        (None, "1.0"),
        ([], "1.0"),
        ({"url": "http://x/h"}, "1.0"),  # no taskId
        ({"taskId": "t1"}, "1.0"),  # no url
        ({"taskId": "t1", "url": 5}, "1.0"),
        ({"taskId": "t1", "url": "http://x/h", "token": 5}, "1.0"),
        ({"taskId": "t1", "url": "http://x/h", "token": "a\r\nX-Evil: 1"}, "1.0"),
        ({"taskId": "t1", "url": "http://x/h", "id": "x" * 129}, "1.0"),
        ({"taskId": "t1", "url": "http://x/h", "authentication": "Bearer"}, "1.0"),
        ({"taskId": "t1", "url": "http://x/h", "authentication": {"scheme": "Be arer"}}, "1.0"),
        ({"taskId": "t1", "url": "http://x/h", "authentication": {"schemes": "Bearer"}}, "0.3"),
        ({"taskId": "t1", "url": "http://x/h"}, "0.3"),  # v0.3 nests the config
        ({"taskId": "t1", "pushNotificationConfig": []}, "0.3"),
    ],
)
def test_bad_set_params_are_invalid_params(params: Any, version: Any) -> None:
    with pytest.raises(RpcError) as refused:
        parse_push_set(params, version)
    assert refused.value.code == -32602


def test_the_config_inline_with_the_message() -> None:
    message = {"parts": [{"text": "hi"}]}
    v1 = parse_send(
        {
            "message": message,
            "configuration": {"taskPushNotificationConfig": {"url": "http://x/h", "token": "t"}},
        }
    )
    assert v1.push == PushConfig(url="http://x/h", token="t")
    v03 = parse_send(
        {"message": message, "configuration": {"pushNotificationConfig": {"url": "http://x/h"}}}
    )
    assert v03.push == PushConfig(url="http://x/h")
    assert parse_send({"message": message}).push is None
    for bad in ({"pushNotificationConfig": {"token": "t"}}, "blocking"):
        with pytest.raises(RpcError):
            parse_send({"message": message, "configuration": bad})


def test_get_list_delete_params() -> None:
    assert parse_push_ref({"taskId": "t1", "id": "c1"}, "1.0", "push_get").config_id == "c1"
    assert parse_push_ref({"taskId": "t1"}, "1.0", "push_get").config_id is None
    legacy = parse_push_ref({"id": "t1", "pushNotificationConfigId": "c1"}, "0.3", "push_delete")
    assert (legacy.task_id, legacy.config_id) == ("t1", "c1")
    listed = parse_push_ref({"taskId": "t1", "pageSize": 5, "pageToken": "5"}, "1.0", "push_list")
    assert (listed.page_size, listed.offset) == (5, 5)
    for params, version, action in (
        ({"taskId": "t1"}, "1.0", "push_delete"),  # delete names the config
        ({"id": "t1"}, "1.0", "push_get"),  # v1.0 names the task taskId
        ({"taskId": "t1"}, "0.3", "push_list"),  # v0.3 names it id
        ({"taskId": "t1", "pageSize": 101}, "1.0", "push_list"),  # 0 is proto3 for unset
        ({"taskId": "t1", "pageToken": "x"}, "1.0", "push_list"),
        ("t1", "1.0", "push_get"),
    ):
        with pytest.raises(RpcError):
            parse_push_ref(params, version, action)  # type: ignore[arg-type]


def test_configs_encode_as_the_sdk_reads_them() -> None:
    v1 = Encoder("1.0").push_config(FULL)
    parsed = json_format.ParseDict(v1, TaskPushNotificationConfig())
    assert (parsed.task_id, parsed.id, parsed.url, parsed.token) == (
        "t1",
        "c1",
        FULL.url,
        "secret-token",
    )
    assert (parsed.authentication.scheme, parsed.authentication.credentials) == ("Bearer", "abc")
    assert parse_push_set(v1, "1.0") == FULL  # what Get answers, Create takes back
    v03 = Encoder("0.3").push_config(FULL)
    legacy = types_v03.TaskPushNotificationConfig.model_validate(v03)
    assert legacy.task_id == "t1" and legacy.push_notification_config.id == "c1"
    assert legacy.push_notification_config.authentication is not None
    assert legacy.push_notification_config.authentication.schemes == ["Bearer"]
    assert parse_push_set(v03, "0.3") == FULL
    bare = Encoder("1.0").push_config(PushConfig(url="http://x/h", id="t1", task_id="t1"))
    assert bare == {"taskId": "t1", "id": "t1", "url": "http://x/h"}


def test_the_posted_task_and_its_headers() -> None:
    task = TaskView("t1", "ctx", "echo", state="completed", answer="done")
    body = Encoder("1.0").push_payload(task)
    parsed = json_format.ParseDict(body, StreamResponse())
    assert parsed.HasField("task") and parsed.task.id == "t1"
    assert parsed.task.status.state == TaskState.TASK_STATE_COMPLETED
    legacy = Encoder("0.3").push_payload(task)
    assert types_v03.Task.model_validate(legacy).status.state == types_v03.TaskState.completed
    assert push_headers(FULL) == {
        "Content-Type": "application/json",
        TOKEN_HEADER: "secret-token",
        "Authorization": "Bearer abc",
    }
    assert TOKEN_HEADER == "X-A2A-Notification-Token"
    # A scheme without credentials sends no Authorization (as the SDK's sender does).
    assert "Authorization" not in push_headers(PushConfig(url="http://x/h", scheme="Bearer"))
    assert push_headers(PushConfig(url="http://x/h")) == {"Content-Type": "application/json"}


def test_which_changes_are_told() -> None:
    assert {"working", "completed", "failed", "canceled", "input-required"} == NOTIFIABLE
    assert next_step("working", "submitted", stale=False) == "send"
    assert next_step("completed", "working", stale=False) == "send"
    assert next_step("completed", "submitted", stale=False) == "send"  # working was missed
    assert next_step("input-required", "working", stale=False) == "send"
    assert next_step("submitted", "submitted", stale=False) == "wait"
    assert next_step("working", "working", stale=False) == "wait"
    assert next_step("working", "working", stale=True) == "done"
    assert next_step("completed", "completed", stale=False) == "done"
    assert next_step(None, "working", stale=False) == "done"  # the task was deleted
