import { Client } from "@langchain/langgraph-sdk";
import { authHeaders } from "./api.ts";

// The official LangGraph SDK against the gateway's LangGraph Agent Server API (same origin).
// Every request gets the session's credentials (a fresh access token or the API key); `apiKey: null` stops the SDK looking for env keys.
export const lgClient = new Client({
  apiUrl: window.location.origin,
  apiKey: null,
  onRequest: async (_url, init) => {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(await authHeaders())) headers.set(name, value);
    return { ...init, headers };
  },
});
