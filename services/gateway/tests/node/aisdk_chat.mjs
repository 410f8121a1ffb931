// The `ai` package's own DefaultChatTransport and readUIMessageStream, exactly as useChat uses
// them, against the gateway's POST /api/chat and GET /api/chat/{id}/stream.
//
//   node aisdk_chat.mjs <gateway url> <api key> <chat id> <question> [send|drop-and-resume|regenerate]
//                       [assistant id]
//
// Prints one JSON summary on stdout; exits non-zero when a chunk fails the package's schema or
// the stream breaks the protocol (the transport and readUIMessageStream throw).
import { DefaultChatTransport, readUIMessageStream, uiMessageChunkSchema } from "ai";

const [url, apiKey, chatId, question, mode = "send", assistant = "agent"] = process.argv.slice(2);
const responses = [];

// Records each response's status, headers and raw body next to what the transport reads.
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  const entry = { status: response.status, headers: Object.fromEntries(response.headers), raw: "" };
  responses.push(entry);
  if (!response.body) return response;
  const [mine, theirs] = response.body.tee();
  (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const piece of mine) entry.raw += decoder.decode(piece, { stream: true });
    } catch {
      // the transport aborted the request
    }
  })();
  return new Response(theirs, { status: response.status, headers: response.headers });
}

const transport = new DefaultChatTransport({
  api: `${url}/api/chat`,
  headers: { Authorization: `Bearer ${apiKey}` },
  body: { assistant_id: assistant },
  fetch: recordingFetch,
});

const schema = uiMessageChunkSchema();

async function read(stream) {
  const [forChunks, forMessage] = stream.tee();
  const chunks = [];
  const collect = (async () => {
    for await (const chunk of forChunks) {
      const checked = await schema.validate(chunk);
      if (!checked.success) throw new Error(`invalid chunk ${JSON.stringify(chunk)}: ${checked.error}`);
      chunks.push(chunk);
    }
  })();
  let message;
  for await (const m of readUIMessageStream({ stream: forMessage, terminateOnError: true })) message = m;
  await collect;
  return { chunks, message };
}

function userMessage(text) {
  return { id: `u-${Date.now()}`, role: "user", parts: [{ type: "text", text }] };
}

function summary(result) {
  const parts = result.message?.parts ?? [];
  return {
    types: result.chunks.map((c) => c.type),
    text: parts.filter((p) => p.type === "text").map((p) => p.text).join(""),
    sources: parts.filter((p) => p.type === "source-url"),
    tools: parts.filter((p) => p.type === "dynamic-tool"),
    data: parts.filter((p) => p.type.startsWith("data-")),
    metadata: result.message?.metadata ?? null,
    message_id: result.message?.id ?? null,
  };
}

const out = {};
if (mode === "send") {
  const stream = await transport.sendMessages({
    chatId, messages: [userMessage(question)], trigger: "submit-message", messageId: undefined,
  });
  Object.assign(out, summary(await read(stream)));
} else if (mode === "drop-and-resume") {
  // Drop the response after its first chunk; the run goes on, and the resume replays it.
  const controller = new AbortController();
  const stream = await transport.sendMessages({
    chatId, messages: [userMessage(question)], trigger: "submit-message", messageId: undefined,
    abortSignal: controller.signal,
  });
  const seen = [];
  try {
    for await (const chunk of stream) {
      seen.push(chunk.type);
      controller.abort();
    }
  } catch (error) {
    if (error.name !== "AbortError") throw error;
  }
  out.dropped_after = seen;
  const resumed = await transport.reconnectToStream({ chatId });
  out.resumed = resumed !== null;
  if (resumed) Object.assign(out, summary(await read(resumed)));
  // The run has ended: nothing to resume (204, which the transport reads as null).
  out.after_end = await transport.reconnectToStream({ chatId });
} else if (mode === "regenerate") {
  // As useChat's regenerate(): the last assistant message goes, the user message is sent again.
  const question_ = userMessage(question);
  const first = await read(await transport.sendMessages({
    chatId, messages: [question_], trigger: "submit-message", messageId: undefined,
  }));
  const again = await transport.sendMessages({
    chatId, messages: [question_], trigger: "regenerate-message", messageId: first.message.id,
  });
  out.first = summary(first);
  Object.assign(out, summary(await read(again)));
} else {
  throw new Error(`unknown mode ${mode}`);
}
out.responses = responses.map((r) => ({
  status: r.status,
  stream_header: r.headers["x-vercel-ai-ui-message-stream"] ?? null,
  content_type: r.headers["content-type"] ?? null,
  ends_with_done: r.raw.trimEnd().endsWith("data: [DONE]"),
}));
console.log(JSON.stringify(out));
