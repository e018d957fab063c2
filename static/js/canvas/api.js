// The canvas's JSON endpoints. Every answer comes back as {ok, status, data}; errors carry
// data.error, a sentence to show the user.

const UNREACHABLE = "The server cannot be reached. Check the connection and try again.";

export class Api {
  constructor(root) {
    this.base = root.dataset.baseUrl;
    this.csrf = root.dataset.csrfToken;
  }

  url(path, params) {
    const query = params ? "?" + new URLSearchParams(params) : "";
    return this.base + path + query;
  }

  tileUrl(level, tx, ty, version) {
    return `${this.base}/tiles/${level}/${tx}/${ty}/${version}.png`;
  }

  async get(path, params) {
    let response;
    try {
      response = await fetch(this.url(path, params), { headers: { Accept: "application/json" } });
    } catch {
      return { ok: false, status: 0, data: { error: UNREACHABLE } };
    }
    return this.answer(response);
  }

  // `path` is relative to the canvas ("/undo") or a URL the server handed out.
  async post(path, body) {
    const url = path.startsWith(this.base + "/") ? path : this.base + path;
    let response;
    try {
      response = await fetch(url, {
        method: "POST", body, headers: { "X-CSRFToken": this.csrf, Accept: "application/json" },
      });
    } catch {
      return { ok: false, status: 0, data: { error: UNREACHABLE } };
    }
    return this.answer(response);
  }

  async answer(response) {
    let data = {};
    try {
      data = await response.json();
    } catch {
      data = { error: `The server answered ${response.status} ${response.statusText}.` };
    }
    return { ok: response.ok, status: response.status, data };
  }
}

// A FormData from a plain object.
export function formData(fields) {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined && value !== null) data.append(name, value);
  }
  return data;
}
