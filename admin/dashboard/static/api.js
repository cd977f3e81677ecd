// The admin API as the page uses it: a bearer token kept for this tab only.

const TOKEN_KEY = "parley.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export async function login(username, password) {
  const body = new URLSearchParams({ username, password });
  const response = await fetch("/auth/token", { method: "POST", body });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, errorText(data, "could not log in"));
  }
  sessionStorage.setItem(TOKEN_KEY, data.access_token);
}

export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  const options = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError(0, "Parley cannot be reached; check the connection");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, errorText(data, `${method} ${path} failed`));
  }
  return data;
}

function errorText(data, fallback) {
  const error = data && data.error;
  return (error && error.message) || fallback;
}
