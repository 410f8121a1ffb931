import { useEffect, useState } from "react";

// Hash routes (#/chat/<thread>): the gateway's API owns real paths such as /threads and /runs,
// so the app's own locations never collide with them and any reload lands on index.html.
export function useRoute(): string[] {
  const read = () => window.location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [parts, setParts] = useState(read);
  useEffect(() => {
    const update = () => setParts(read());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return parts;
}

export function go(...parts: string[]): void {
  window.location.hash = "/" + parts.map(encodeURIComponent).join("/");
}
