import { Client } from "@langchain/langgraph-sdk";
import { accessToken } from "./api.ts";

// The official LangGraph SDK against the gateway's LangGraph Agent Server API (same origin).
// Every request gets a fresh access token; `apiKey: null` stops the SDK looking for env keys.
export const lgClient = new Client({
  apiUrl: window.location.origin,
  apiKey: null,
  onRequest: async (_url, init) => {
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${await accessToken()}`);
    return { ...init, headers };
  },
});
