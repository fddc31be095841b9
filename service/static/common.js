// Shared by the shopper page (shop.js) and the assistant page (assist.js): API calls with the storefront
// key, the server-sent-event reader, readable error messages, garment names, product cards (the photo with
// its garment boxes is photo.js).
// Everything goes through fetch() so the X-API-Key header is always sent (EventSource and <img> cannot).

const KEY_STORAGE = "fashion.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function saveApiKey(key) {
  localStorage.setItem(KEY_STORAGE, key.trim());
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { "X-API-Key": key, ...extra } : extra;
}

async function failure(response) {
  let code = "http_error";
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    code = body.code || code;
    message = body.message || message;
  } catch {
    // not JSON: keep the status line
  }
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  return new ApiError(response.status, code, message, retryAfter);
}

/** Call the API: `json` sends a JSON body, `form` a FormData; answers the parsed JSON or throws ApiError. */
export async function api(path, { method = "GET", json, form, keepalive = false } = {}) {
  const init = { method, headers: headers(), keepalive };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "the service could not be reached");
  }
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

const imageCache = new Map(); // path -> Promise<object URL>

/** An image behind the API as an object URL (fetched once per path, with the key header). */
export function imageUrl(path) {
  if (!imageCache.has(path)) {
    const loading = fetch(path, { headers: headers() }).then(async (response) => {
      if (!response.ok) throw await failure(response);
      return URL.createObjectURL(await response.blob());
    });
    loading.catch(() => imageCache.delete(path)); // retry next time
    imageCache.set(path, loading);
  }
  return imageCache.get(path);
}

export function itemImagePath(itemId) {
  return `/v1/items/${encodeURIComponent(itemId)}/image`;
}

/**
 * Read a text/event-stream with fetch + ReadableStream. Calls onEvent(name, data) for each event until the
 * stream ends (resolves) or fails (rejects with ApiError). `signal` aborts it.
 */
export async function readEvents(path, onEvent, signal) {
  let response;
  try {
    response = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
  } catch (error) {
    if (signal && signal.aborted) return;
    throw new ApiError(0, "network", "the service could not be reached");
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const blocks = buffer.split(/\r?\n\r?\n/);
      buffer = blocks.pop();
      for (const block of blocks) dispatch(block, onEvent);
    }
  } catch (error) {
    if (signal && signal.aborted) return;
    throw new ApiError(0, "network", "the live connection was interrupted");
  }
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue; // comment (": ping")
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) onEvent(name, JSON.parse(data.join("\n")));
}

function formatBytes(bytes) {
  const mb = bytes / (1024 * 1024);
  if (mb >= 1) return `${Number.isInteger(mb) ? mb : mb.toFixed(1)} MB`;
  return `${Math.round(bytes / 1024)} KB`;
}

/** What to tell a person about a failed call. */
export function describeError(error) {
  if (!(error instanceof ApiError)) return "Something went wrong in the page. Please reload and try again.";
  const wait = error.retryAfter ? ` in ${error.retryAfter} s` : " in a moment";
  switch (error.status) {
    case 0:
      return "Can't reach the shop's search service. Check your connection and try again.";
    case 401:
      return "This shop needs an access key for visual search. Enter it below and try again.";
    case 403:
      if (error.code === "profiles_disabled") return "This shop keeps no style profiles on its server.";
      return "This is not allowed here.";
    case 404:
      if (error.code === "session_not_found") return "This assistant session has expired or does not exist.";
      if (error.code === "profile_not_found") return "Your saved style has expired or was forgotten.";
      if (error.code === "item_not_found") return "That product is no longer in the catalogue.";
      return "Not found.";
    case 413: {
      const limit = /(\d+)-byte limit/.exec(error.message) || /limit is (\d+)/.exec(error.message);
      const size = limit ? ` The limit is ${formatBytes(Number(limit[1]))}.` : "";
      return `This photo is too large.${size} Choose a smaller photo or lower the camera resolution.`;
    }
    case 415:
      return "That file is not an image we can read. Choose a photo (JPEG, PNG, WebP or HEIC).";
    case 422:
      if (error.code === "undecodable_image") return "That photo seems damaged and could not be read. Try another one.";
      return `The request was not accepted: ${error.message}`;
    case 429:
      return `Too many requests right now. Please try again${wait}.`;
    case 503:
      return `The service is busy. Please try again${wait}.`;
    default:
      return "Something went wrong on our side. Please try again.";
  }
}

/** A DOM element: el("p", {class: "x", onclick: f}, "text", child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/**
 * Status (polite) and error (assertive) live regions, and an access-key form (after the error) that a 401
 * shows; `onKeySaved` runs once a key is stored.
 */
export function messenger(statusNode, errorNode, onKeySaved) {
  const input = el("input", { type: "password", id: "api-key", autocomplete: "off", required: true });
  const keyForm = el(
    "form",
    { class: "key-form", hidden: true },
    el("label", { for: "api-key" }, "Access key"),
    input,
    el("button", { type: "submit" }, "Save key"),
  );
  errorNode.after(keyForm);
  const show = {
    status(text) {
      statusNode.textContent = text;
    },
    error(error) {
      errorNode.textContent = typeof error === "string" ? error : describeError(error);
      if (error instanceof ApiError && error.status === 401) {
        keyForm.hidden = false;
        input.focus();
      }
    },
    clear() {
      errorNode.textContent = "";
    },
  };
  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveApiKey(input.value);
    keyForm.hidden = true;
    show.clear();
    show.status("Key saved. Trying again…");
    onKeySaved();
  });
  return show;
}

export function formatPrice(price, currency) {
  if (price === null || price === undefined) return "Price on request";
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "EUR" }).format(price);
  } catch {
    return `${price} ${currency}`;
  }
}

function label(text) {
  return (text || "garment").replace(/_/g, " ");
}

/** "top", or "top 2" when the photo has several tops. */
export function garmentName(garments, index) {
  const same = garments.filter((garment) => garment.category === garments[index].category);
  const name = label(garments[index].category);
  return same.length > 1 ? `${name} ${same.indexOf(garments[index]) + 1}` : name;
}

function chip(agreement, matched) {
  const text = `${label(agreement.group)}: ${agreement.value}`;
  const wanted = matched || agreement.query === agreement.value ? "" : ` (wanted ${agreement.query})`;
  return el(
    "li",
    { class: `chip ${matched ? "matched" : "mismatched"}` },
    el("span", { "aria-hidden": "true" }, matched ? "✓ " : "✗ "),
    el("span", { class: "visually-hidden" }, matched ? "Matches " : "Differs "),
    text + wanted,
  );
}

/**
 * A product card. `product` is a search match or a pushed item. `onOpen` runs when the shopper opens the
 * product; `actions` are extra buttons [{label, className, onClick(button)}]; `explanation` says why it
 * suits the shopper's style profile ("matches your style: navy, loose fit").
 */
export function renderCard(product, { onOpen, actions = [], note, explanation } = {}) {
  const image = el("img", { alt: "", width: "96", height: "96" });
  imageUrl(itemImagePath(product.item_id))
    .then((url) => {
      image.src = url;
    })
    .catch(() => image.classList.add("missing"));
  const chips = [
    ...(product.matched || []).map((agreement) => chip(agreement, true)),
    ...(product.mismatched || []).map((agreement) => chip(agreement, false)),
  ];
  const card = el(
    "li",
    { class: "card", dataset: { item: product.item_id } },
    el(
      "a",
      { class: "card-open", href: product.url, target: "_blank", rel: "noopener", onclick: onOpen },
      image,
      el("span", { class: "card-title" }, product.title),
    ),
    el(
      "p",
      { class: "card-meta" },
      el("span", { class: "brand" }, product.brand),
      el("span", { class: "price" }, formatPrice(product.price, product.currency)),
      el(
        "span",
        { class: product.in_stock ? "stock in" : "stock out" },
        product.in_stock ? "In stock" : "Out of stock",
      ),
    ),
    note ? el("p", { class: "card-note" }, note) : null,
    explanation ? el("p", { class: "card-why" }, explanation) : null,
    chips.length ? el("ul", { class: "chips", "aria-label": "How it compares" }, ...chips) : null,
    actions.length
      ? el(
          "div",
          { class: "card-actions" },
          ...actions.map((action) => {
            const button = el("button", { type: "button", class: action.className || "" }, action.label);
            button.addEventListener("click", () => action.onClick(button));
            return button;
          }),
        )
      : null,
  );
  return card;
}

/**
 * The chat inside `container`: a heading, the messages and a form that sends as `sender` to `partner`.
 * Answers add(message), which shows one message (false when it is already shown).
 */
export function chat(container, { sender, partner, heading, sessionPath, show }) {
  const list = el("ol", { id: "messages", class: "messages", "aria-live": "polite", "aria-labelledby": "chat-title" });
  const input = el("input", { id: "chat-text", maxlength: "500", placeholder: `Message the ${partner}`, autocomplete: "off" });
  const form = el(
    "form",
    { id: "chat-form", class: "chat-form" },
    el("label", { for: "chat-text", class: "visually-hidden" }, `Message to the ${partner}`),
    input,
    el("button", { type: "submit" }, "Send"),
  );
  container.append(el(heading, { id: "chat-title", tabindex: "-1" }, "Chat"), list, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || !sessionPath()) return;
    try {
      await api(`${sessionPath()}/messages`, { method: "POST", json: { sender, text } });
      input.value = "";
    } catch (error) {
      show.error(error);
    }
  });
  const seen = new Set();
  return function add(message) {
    if (seen.has(message.id)) return false;
    seen.add(message.id);
    const mine = message.sender === sender;
    const who = mine ? "You" : partner[0].toUpperCase() + partner.slice(1);
    list.append(el("li", { class: `msg ${mine ? "mine" : "theirs"}` }, el("span", { class: "who" }, `${who}: `), message.text));
    list.scrollTop = list.scrollHeight;
    return true;
  };
}

export function clockTime(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
