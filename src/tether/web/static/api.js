// The view's HTTP API. The token travels as a cookie (set when the page was opened with
// ?token=), so requests need nothing more; the browser adds Origin to every POST.
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function answer(response) {
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof body === "string" ? { error: body } : body);
  return body;
}

export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const qs = query.toString();
  return answer(await fetch(path + (qs ? `?${qs}` : ""), { credentials: "same-origin" }));
}

export async function post(path, body) {
  return answer(await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  }));
}

export const runPath = (id) => `/api/runs/${encodeURIComponent(id)}`;
