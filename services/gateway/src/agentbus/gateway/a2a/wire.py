"""A2A objects on the wire, in the two JSON shapes clients speak (pure: no I/O).

v1.0 (`SendMessage`, `SendStreamingMessage`, `GetTask`, `CancelTask`) is the protobuf JSON of
a2a.proto: `TASK_STATE_*`, `ROLE_*`, parts as `{"text": ...}` / `{"data": ...}`, stream results
wrapped as `{"task"}`, `{"statusUpdate"}`, `{"artifactUpdate"}`. v0.3 (`message/send`,
`message/stream`, `tasks/get`, `tasks/cancel`) tags every object with `kind`, states and roles
in lower case, and marks the last status update `final`.

Push notification configs: v1.0 `CreateTaskPushNotificationConfig` (and Get/List/Delete) take
the flat `TaskPushNotificationConfig` {taskId, id, url, token, authentication {scheme,
credentials}}; v0.3 `tasks/pushNotificationConfig/set|get|list|delete` nest it as {taskId,
pushNotificationConfig {id, url, token, authentication {schemes, credentials}}}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from agentbus.contracts import new_id

Version = Literal["1.0", "0.3"]
State = Literal["submitted", "working", "completed", "failed", "canceled", "input-required"]

V1_METHODS = {
    "SendMessage": "send",
    "SendStreamingMessage": "stream",
    "GetTask": "get",
    "CancelTask": "cancel",
    "ListTasks": "list",
    "SubscribeToTask": "subscribe",
    "CreateTaskPushNotificationConfig": "push_set",
    "GetTaskPushNotificationConfig": "push_get",
    "ListTaskPushNotificationConfigs": "push_list",
    "DeleteTaskPushNotificationConfig": "push_delete",
}
V03_METHODS = {
    "message/send": "send",
    "message/stream": "stream",
    "tasks/get": "get",
    "tasks/cancel": "cancel",
    "tasks/resubscribe": "subscribe",
    "tasks/pushNotificationConfig/set": "push_set",
    "tasks/pushNotificationConfig/get": "push_get",
    "tasks/pushNotificationConfig/list": "push_list",
    "tasks/pushNotificationConfig/delete": "push_delete",
}
TERMINAL: set[State] = {"completed", "failed", "canceled", "input-required"}
# Run status (RunEvent.status on `end`) -> task state.
RUN_STATES: dict[str, State] = {
    "success": "completed",
    "error": "failed",
    "timeout": "failed",
    "cancelled": "canceled",
    "interrupted": "input-required",
}

# JSON-RPC and A2A error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
TASK_NOT_FOUND = -32001
TASK_NOT_CANCELABLE = -32002
UNSUPPORTED_OPERATION = -32004


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class TaskView:
    """A run as an A2A task."""

    id: str
    context_id: str
    assistant_id: str
    state: State = "submitted"
    answer: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class PushConfig:
    """Where and how to POST a task's state changes (one of a task's push configs)."""

    url: str
    id: str = ""  # "" until stored: the task id then (as a2a-sdk's stores do)
    task_id: str = ""
    token: str | None = None
    scheme: str | None = None
    credentials: str | None = None


@dataclass(frozen=True)
class Incoming:
    text: str
    context_id: str | None
    task_id: str | None
    return_immediately: bool
    push: PushConfig | None = None


def parse_send(params: Any) -> Incoming:
    """The params of SendMessage / message/send (either shape)."""
    if not isinstance(params, dict) or not isinstance(params.get("message"), dict):
        raise RpcError(INVALID_PARAMS, "params.message is required")
    message = params["message"]
    parts = message.get("parts")
    if not isinstance(parts, list):
        raise RpcError(INVALID_PARAMS, "params.message.parts must be a list")
    text = "".join(
        str(p["text"])
        for p in parts
        if isinstance(p, dict)
        and isinstance(p.get("text"), str)
        and p.get("kind", "text") == "text"
    ).strip()
    if not text:
        raise RpcError(INVALID_PARAMS, "the message has no text part")
    context_id = message.get("contextId")
    if context_id is not None and not isinstance(context_id, str):
        raise RpcError(INVALID_PARAMS, "contextId must be a string")
    config = params.get("configuration") or {}
    if not isinstance(config, dict):
        raise RpcError(INVALID_PARAMS, "configuration must be an object")
    immediately = bool(config.get("returnImmediately")) or config.get("blocking") is False
    task_id = message.get("taskId")
    # v1.0 names it taskPushNotificationConfig (flat), v0.3 pushNotificationConfig.
    inline = config.get("taskPushNotificationConfig") or config.get("pushNotificationConfig")
    push = _push_body(inline, "configuration's push notification config") if inline else None
    return Incoming(text, context_id or None, task_id or None, immediately, push)


@dataclass(frozen=True)
class ListQuery:
    """ListTasks' parameters (v1.0): a page of the assistant's tasks, newest first."""

    context_id: str | None
    state: State | None
    page_size: int
    offset: int


STATE_NAMES: dict[str, State] = {
    "TASK_STATE_" + s.upper().replace("-", "_"): s
    for s in ("submitted", "working", "completed", "failed", "canceled", "input-required")
}


def parse_list(params: Any) -> ListQuery:
    params = params if params is not None else {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object")
    context_id = params.get("contextId")
    if context_id is not None and (not isinstance(context_id, str) or not context_id):
        raise RpcError(INVALID_PARAMS, "contextId must be a non-empty string")
    status = params.get("status")
    if status in (None, "", "TASK_STATE_UNSPECIFIED"):
        state = None
    elif isinstance(status, str) and status in STATE_NAMES:
        state = STATE_NAMES[status]
    else:
        raise RpcError(INVALID_PARAMS, f"status must be one of {sorted(STATE_NAMES)}")
    size = params.get("pageSize", 50)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
        raise RpcError(INVALID_PARAMS, "pageSize must be 1-100")
    token = params.get("pageToken") or "0"
    if not isinstance(token, str) or not token.isdigit() or len(token) > 9:
        raise RpcError(INVALID_PARAMS, "pageToken must be a token this server gave")
    return ListQuery(context_id, state, size, int(token))


MAX_CONFIG_ID = 128
MAX_SECRET = 4096
# RFC 7230 token characters: an HTTP authentication scheme is one token.
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def _text(value: Any, name: str, limit: int) -> str | None:
    """An optional printable string field (it may end up in an HTTP header)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, f"{name} must be a string")
    if len(value) > limit:
        raise RpcError(INVALID_PARAMS, f"{name} longer than {limit} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise RpcError(INVALID_PARAMS, f"{name} must not hold control characters")
    return value


def _push_body(body: Any, where: str) -> PushConfig:
    """The config's own fields, in either shape: v1.0 authentication {scheme}, v0.3 {schemes}."""
    if not isinstance(body, dict):
        raise RpcError(INVALID_PARAMS, f"{where} must be an object")
    url = body.get("url")
    if not isinstance(url, str) or not url:
        raise RpcError(INVALID_PARAMS, f"{where}: url is required")
    config_id = _text(body.get("id"), "the push config id", MAX_CONFIG_ID) or ""
    token = _text(body.get("token"), "token", MAX_SECRET)
    scheme = credentials = None
    auth = body.get("authentication")
    if auth is not None:
        if not isinstance(auth, dict):
            raise RpcError(INVALID_PARAMS, "authentication must be an object")
        schemes = auth.get("schemes")
        if schemes is not None:  # v0.3: the first scheme is the one used (as a2a-sdk converts)
            if not isinstance(schemes, list) or not all(isinstance(x, str) for x in schemes):
                raise RpcError(INVALID_PARAMS, "authentication.schemes must be a list of strings")
            scheme = schemes[0] if schemes else None
        else:
            scheme = auth.get("scheme")
        scheme = _text(scheme, "authentication scheme", 64)
        if scheme is not None and not set(scheme) <= _TOKEN_CHARS:
            raise RpcError(INVALID_PARAMS, "authentication scheme must be one HTTP token")
        credentials = _text(auth.get("credentials"), "authentication credentials", MAX_SECRET)
    return PushConfig(url, config_id, "", token, scheme, credentials)


def parse_push_set(params: Any, version: Version) -> PushConfig:
    """CreateTaskPushNotificationConfig (v1.0, flat) / tasks/pushNotificationConfig/set (v0.3,
    the config under pushNotificationConfig)."""
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object")
    task_id = params.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise RpcError(INVALID_PARAMS, "params.taskId (the task id) is required")
    if version == "0.3":
        body = params.get("pushNotificationConfig")
        if body is None:
            raise RpcError(INVALID_PARAMS, "params.pushNotificationConfig is required")
        config = _push_body(body, "params.pushNotificationConfig")
    else:
        config = _push_body(params, "params")
    return PushConfig(
        config.url, config.id, task_id, config.token, config.scheme, config.credentials
    )


@dataclass(frozen=True)
class PushRef:
    """A task's push config (get, delete) or all of them (list: config_id None)."""

    task_id: str
    config_id: str | None
    page_size: int = 100
    offset: int = 0


def parse_push_ref(params: Any, version: Version, action: str) -> PushRef:
    """v1.0: {taskId, id} (list: {taskId, pageSize, pageToken}); v0.3: {id (the task),
    pushNotificationConfigId}. A get without a config id means the task's first config."""
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object")
    task_key, config_key = (
        ("taskId", "id") if version == "1.0" else ("id", "pushNotificationConfigId")
    )
    task_id = params.get(task_key)
    if not isinstance(task_id, str) or not task_id:
        raise RpcError(INVALID_PARAMS, f"params.{task_key} (the task id) is required")
    if action == "push_list":
        size = params.get("pageSize") or 100
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
            raise RpcError(INVALID_PARAMS, "pageSize must be 1-100")
        token = params.get("pageToken") or "0"
        if not isinstance(token, str) or not token.isdigit() or len(token) > 9:
            raise RpcError(INVALID_PARAMS, "pageToken must be a token this server gave")
        return PushRef(task_id, None, size, int(token))
    config_id = _text(params.get(config_key), f"params.{config_key}", MAX_CONFIG_ID)
    if config_id is None and action == "push_delete":
        raise RpcError(INVALID_PARAMS, f"params.{config_key} (the config id) is required")
    return PushRef(task_id, config_id)


# The states a push config is told of: each change after `submitted`.
NOTIFIABLE: set[State] = {"working", *TERMINAL}
TOKEN_HEADER = "X-A2A-Notification-Token"


def push_headers(config: PushConfig) -> dict[str, str]:
    """The POST's headers: the config's token in X-A2A-Notification-Token (as a2a-sdk sends and
    reads it) and `Authorization: <scheme> <credentials>` when both are given."""
    headers = {"Content-Type": "application/json"}
    if config.token:
        headers[TOKEN_HEADER] = config.token
    if config.scheme and config.credentials:
        headers["Authorization"] = f"{config.scheme} {config.credentials}"
    return headers


def task_id_of(params: Any) -> str:
    if not isinstance(params, dict) or not isinstance(params.get("id"), str) or not params["id"]:
        raise RpcError(INVALID_PARAMS, "params.id (the task id) is required")
    return str(params["id"])


class Encoder:
    """Objects of one protocol version."""

    def __init__(self, version: Version) -> None:
        self.version: Version = version
        self.v1 = version == "1.0"

    def state(self, state: State) -> str:
        return "TASK_STATE_" + state.upper().replace("-", "_") if self.v1 else state

    def text_part(self, text: str) -> dict[str, Any]:
        return {"text": text} if self.v1 else {"kind": "text", "text": text}

    def data_part(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.v1:
            return {"data": data, "mediaType": "application/json"}
        return {"kind": "data", "data": data}

    def agent_message(self, task: TaskView, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "messageId": new_id(),
            "role": "ROLE_AGENT" if self.v1 else "agent",
            "parts": [self.text_part(text)],
            "contextId": task.context_id,
            "taskId": task.id,
        }
        return out if self.v1 else {"kind": "message", **out}

    def status(self, task: TaskView) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state(task.state), "timestamp": now()}
        if task.error:
            out["message"] = self.agent_message(task, task.error)
        return out

    def artifact(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"artifactId": "answer", "name": "answer", "parts": parts}

    def answer_parts(self, task: TaskView) -> list[dict[str, Any]]:
        parts = [self.text_part(task.answer)] if task.answer else []
        if task.citations:
            parts.append(self.data_part({"citations": task.citations}))
        return parts

    def task(self, task: TaskView) -> dict[str, Any]:
        parts = self.answer_parts(task)
        out: dict[str, Any] = {
            "id": task.id,
            "contextId": task.context_id,
            "status": self.status(task),
            "artifacts": [self.artifact(parts)] if parts else [],
            "history": [],
            "metadata": {"assistant_id": task.assistant_id, "run_id": task.id},
        }
        return out if self.v1 else {"kind": "task", **out}

    # -- push notifications ------------------------------------------------------------------

    def push_config(self, config: PushConfig) -> dict[str, Any]:
        body: dict[str, Any] = {"id": config.id, "url": config.url}
        if config.token:
            body["token"] = config.token
        if config.scheme or config.credentials:
            auth: dict[str, Any] = (
                {"scheme": config.scheme or ""}
                if self.v1
                else {"schemes": [config.scheme] if config.scheme else []}
            )
            if config.credentials:
                auth["credentials"] = config.credentials
            body["authentication"] = auth
        if self.v1:
            return {"taskId": config.task_id, **body}
        return {"taskId": config.task_id, "pushNotificationConfig": body}

    def push_payload(self, task: TaskView) -> dict[str, Any]:
        """What is POSTed to a push config's URL: v1.0 a StreamResponse holding the task (the
        spec's payload), v0.3 the Task object itself."""
        return self.stream_task(task)

    # -- stream results ----------------------------------------------------------------------

    def stream_task(self, task: TaskView) -> dict[str, Any]:
        return {"task": self.task(task)} if self.v1 else self.task(task)

    def status_update(self, task: TaskView) -> dict[str, Any]:
        body: dict[str, Any] = {
            "taskId": task.id,
            "contextId": task.context_id,
            "status": self.status(task),
        }
        if self.v1:
            return {"statusUpdate": body}
        return {"kind": "status-update", **body, "final": task.state in TERMINAL}

    def artifact_update(
        self, task: TaskView, parts: list[dict[str, Any]], append: bool, last: bool
    ) -> dict[str, Any]:
        body = {
            "taskId": task.id,
            "contextId": task.context_id,
            "artifact": self.artifact(parts),
            "append": append,
            "lastChunk": last,
        }
        return {"artifactUpdate": body} if self.v1 else {"kind": "artifact-update", **body}


def result(rpc_id: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "result": value}


def error(rpc_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}
