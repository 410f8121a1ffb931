// The official JS client of the LangGraph Agent Server API (@langchain/langgraph-sdk), unmodified,
// against the gateway: create a thread, stream `values` + `messages-tuple` from a graph that
// pauses in an interrupt(), read state and history, resume the interrupt with a command.
// Prints one JSON object for tests/e2e/test_langgraph_js_sdk.py to check.
// Usage: node langgraph_sdk.mjs <gateway url> <api key> <graph>
import { Client } from "@langchain/langgraph-sdk";

const [apiUrl, apiKey, graph] = process.argv.slice(2);
const client = new Client({ apiUrl, apiKey });

const collect = async (stream) => {
  const parts = [];
  for await (const part of stream) parts.push({ event: part.event, data: part.data });
  return parts;
};

const thread = await client.threads.create({ metadata: { client: "js" } });
const first = await collect(
  client.runs.stream(thread.thread_id, graph, {
    input: { messages: [{ type: "human", content: "please approve the js note" }] },
    streamMode: ["values", "messages-tuple"],
  }),
);
const paused = await client.threads.getState(thread.thread_id);
const resumed = await collect(
  client.runs.stream(thread.thread_id, graph, {
    command: { resume: "from js" },
    streamMode: "values",
  }),
);
const history = await client.threads.getHistory(thread.thread_id, { limit: 20 });
const found = await client.threads.search({ metadata: { client: "js" }, limit: 100 });
const assistant = await client.assistants.get(graph);

console.log(
  JSON.stringify({
    thread_id: thread.thread_id,
    first,
    paused: { next: paused.next, interrupts: paused.interrupts },
    resumed,
    history: history.map((h) => ({ next: h.next, values: h.values })),
    listed: found.map((t) => t.thread_id),
    assistant,
  }),
);
