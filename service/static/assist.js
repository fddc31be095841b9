// The assistant page (/assist/{session}): follows the shopper's photo, boxes, selected garment and results
// live from the session's event stream, lists what the shopper did (repeats merged: "×3"), shows the
// shopper-insight card (intent, cart, returning visitor, profile, an editable opener), pushes products and chats.
import {
  api,
  chat,
  clockTime,
  describeError,
  el,
  garmentName,
  imageUrl,
  messenger,
  readEvents,
  renderCard,
} from "./common.js";
import { renderPhoto } from "./photo.js";

const $ = (id) => document.getElementById(id);
const show = messenger($("status"), $("error"), () => follow());
const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const sessionPath = () => `/v1/sessions/${encodeURIComponent(sessionId)}`;
const addMessage = chat($("chat"), { sender: "assistant", partner: "shopper", heading: "h2", sessionPath, show });

const state = {
  search: null,
  photoUrl: null,
  shopperSelected: null, // the garment the shopper looks at
  selected: null, // the garment shown here (follows the shopper; the assistant may look at another)
  pushed: new Set(), // item ids shown to the shopper
  seenActivity: new Set(),
  suggested: "", // the opener last suggested by the insight card (the textarea holds it until edited)
  ended: false,
};

// --- what the shopper sees ----------------------------------------------------------------------------

async function showSearch(search, photoPath) {
  state.search = search;
  state.shopperSelected = null;
  state.selected = null;
  try {
    state.photoUrl = await imageUrl(photoPath);
  } catch (error) {
    show.error(error);
    return;
  }
  $("waiting").hidden = true;
  $("frame").hidden = false;
  render();
}

function select(index) {
  state.selected = index;
  render();
  $("frame").querySelector(`[data-garment="${index}"]`)?.focus();
}

function render() {
  if (!state.search || !state.photoUrl) return;
  const marks = state.shopperSelected === null ? {} : { [state.shopperSelected]: "shopper" };
  renderPhoto($("frame"), state.photoUrl, state.search, state.selected, select, marks);
  const count = state.search.garments.length;
  const garments = state.search.garments;
  $("selection").textContent = garments[state.shopperSelected]
    ? `The shopper is looking at the ${garmentName(garments, state.shopperSelected)}.`
    : `${count} garment${count === 1 ? "" : "s"} found; the shopper has not chosen one yet.`;
  renderResults();
}

function renderResults() {
  const garment = state.search.garments[state.selected];
  $("results").hidden = !garment;
  const cards = $("cards");
  cards.replaceChildren();
  if (!garment) return;
  const whose = state.selected === state.shopperSelected ? " (the shopper's view)" : "";
  $("results-title").textContent = `Matches for the ${garmentName(state.search.garments, state.selected)}${whose}`;
  for (const match of garment.matches) {
    const shown = state.pushed.has(match.item_id);
    const card = cards.appendChild(
      renderCard(match, {
        actions: [
          {
            label: shown ? "Shown ✓" : "Show to shopper",
            className: "push",
            onClick: (button) => push(match, button),
          },
        ],
      }),
    );
    card.classList.toggle("pushed", shown);
  }
}

async function push(match, button) {
  button.disabled = true;
  try {
    await api(`${sessionPath()}/push`, {
      method: "POST",
      json: { item_id: match.item_id, garment: state.selected, note: null },
    });
    button.textContent = "Shown ✓";
    button.closest(".card").classList.add("pushed");
    show.status(`Showing ${match.title} to the shopper.`);
  } catch (error) {
    show.error(error);
  } finally {
    button.disabled = false;
  }
}

// --- activity -------------------------------------------------------------------------------------------

function productName(itemId) {
  for (const garment of state.search?.garments || []) {
    const match = garment.matches.find((candidate) => candidate.item_id === itemId);
    if (match) return match.title;
  }
  return itemId;
}

function repeats(count) {
  return [
    el("span", { "aria-hidden": "true" }, ` ×${count}`),
    el("span", { class: "visually-hidden" }, ` (${count} times)`),
  ];
}

/** Add an entry on top of the list; the same text as the top entry counts it again instead ("×3"). */
function logActivity(text, at) {
  const list = $("activity");
  const top = list.firstElementChild;
  if (top && top.dataset.text === text) {
    const count = Number(top.dataset.count) + 1;
    top.dataset.count = String(count);
    top.querySelector(".times").replaceChildren(...repeats(count));
    const time = top.querySelector("time");
    if (time && at) {
      time.dateTime = at;
      time.textContent = clockTime(at);
    }
    return;
  }
  const when = at ? el("time", { datetime: at }, clockTime(at)) : null;
  const times = el("span", { class: "times" });
  list.prepend(el("li", { dataset: { text, count: "1" } }, when, when ? " " : "", text, times));
}

function seen(key) {
  if (state.seenActivity.has(key)) return true; // a reconnect replays the snapshot
  state.seenActivity.add(key);
  return false;
}

function onPush(push) {
  state.pushed.add(push.item.item_id);
  if (!seen(`push|${push.id}`)) logActivity(`You showed ${push.item.title}`, push.at);
}

const ACTIVITY_TEXT = {
  click: (name) => `Opened ${name}`,
  view_item: (name) => `Viewed ${name}`,
  add_to_cart: (name) => `Added ${name} to the cart`,
  remove_from_cart: (name) => `Removed ${name} from the cart`,
  purchase: (name) => `Bought ${name}`,
};

function onActivity(activity) {
  const key = `${activity.at}|${activity.type}|${activity.item_id}|${activity.garment}|${activity.dwell_s}`;
  if (seen(key)) return;
  if (activity.type === "select_garment") {
    logActivity(`Looked at the ${label(activity.category)}`, activity.at);
    state.shopperSelected = activity.garment;
    state.selected = activity.garment;
    render();
  } else if (ACTIVITY_TEXT[activity.type]) {
    logActivity(ACTIVITY_TEXT[activity.type](productName(activity.item_id)), activity.at);
  }
}

function label(category) {
  return (category || "garment").replace(/_/g, " ");
}

// --- the insight card ----------------------------------------------------------------------------------

const INTENTS = {
  browsing: "Browsing",
  comparing: "Comparing",
  hesitating: "Hesitating",
  ready_to_buy: "Ready to buy",
};

/** Show the session's insight (InsightOut); an opener the assistant has edited stays as it is. */
function showInsight(insight) {
  $("intent").textContent = INTENTS[insight.intent] || insight.intent.replace(/_/g, " ");
  $("intent").dataset.intent = insight.intent;
  $("intent-reason").textContent = insight.reason;
  $("returning").hidden = !insight.returning;
  $("profile").hidden = !insight.profile;
  $("profile-line").textContent = insight.profile || "";
  $("cart-empty").hidden = insight.cart.length > 0;
  $("cart").hidden = insight.cart.length === 0;
  $("cart").replaceChildren(
    ...insight.cart.map((line) =>
      el(
        "li",
        { dataset: { item: line.item_id } },
        el("span", { class: "quantity" }, `${line.quantity} ×`),
        " ",
        el("span", { class: "item" }, productName(line.item_id)),
        " ",
        el("span", { class: "category" }, label(line.category)),
      ),
    ),
  );
  const opener = $("opener");
  const untouched = opener.value === state.suggested;
  if (!untouched && insight.opener !== state.suggested) $("opener-status").textContent = "A new suggestion is ready.";
  state.suggested = insight.opener;
  if (untouched) opener.value = insight.opener;
  $("opener-reset").hidden = opener.value === insight.opener;
}

function useSuggestion() {
  $("opener").value = state.suggested;
  $("opener-reset").hidden = true;
  $("opener").focus();
}

async function postOpener(event) {
  event.preventDefault();
  const text = $("opener").value.trim();
  if (!text || state.ended) return;
  const button = $("opener-post");
  button.disabled = true;
  try {
    addMessage(await api(`${sessionPath()}/messages`, { method: "POST", json: { sender: "assistant", text } }));
    $("opener-status").textContent = "Posted to the chat.";
    $("opener").value = state.suggested; // untouched again: the next insight replaces it
    $("opener-reset").hidden = true;
  } catch (error) {
    $("opener-status").textContent = describeError(error);
    show.error(error);
  } finally {
    button.disabled = state.ended;
  }
}

$("opener-form").addEventListener("submit", postOpener);
$("opener-reset").addEventListener("click", useSuggestion);
$("opener").addEventListener("input", () => {
  $("opener-status").textContent = "";
  $("opener-reset").hidden = $("opener").value === state.suggested;
});

// --- the live stream --------------------------------------------------------------------------------------

async function onEvent(name, data) {
  $("live").textContent = "Live";
  if (name === "snapshot") {
    data.messages.forEach(addMessage);
    if (data.search && data.photo_url) {
      if (!state.search) logActivity(`Searched a photo: ${describe(data.search)}`); // not again on reconnects
      await showSearch(data.search, data.photo_url);
    }
    const history = [...data.activity, ...data.pushed.map((push) => ({ ...push, type: "push" }))];
    history.sort((a, b) => a.at.localeCompare(b.at));
    history.forEach((entry) => (entry.type === "push" ? onPush(entry) : onActivity(entry)));
    state.shopperSelected = data.selected ?? null; // the replayed history may name older photos' garments
    state.selected = state.shopperSelected;
    render();
    showInsight(data.insight);
  } else if (name === "search") {
    logActivity(`Searched a photo: ${describe(data.search)}`);
    await showSearch(data.search, data.photo_url);
  } else if (name === "activity") {
    onActivity(data);
  } else if (name === "insight") {
    showInsight(data);
  } else if (name === "message") {
    addMessage(data);
  } else if (name === "push") {
    onPush(data);
    renderResults();
  } else if (name === "expired") {
    ended();
  }
}

function describe(search) {
  const names = search.garments.map((garment) => label(garment.category));
  return names.length ? names.join(", ") : "no garments found";
}

function ended() {
  state.ended = true;
  $("live").textContent = "Ended";
  show.error("This assistant session has expired or does not exist. Ask the shopper for a new link.");
  $("chat-form").querySelector("button").disabled = true;
  $("opener-post").disabled = true;
}

async function follow() {
  let delayMs = 1000;
  // Events are handled one at a time, in order (a search's photo loads before the next event).
  let queue = Promise.resolve();
  const enqueue = (name, data) => {
    queue = queue.then(() => onEvent(name, data)).catch((error) => show.error(error));
  };
  while (!state.ended) {
    try {
      await readEvents(`${sessionPath()}/stream`, enqueue);
      delayMs = 1000;
    } catch (error) {
      if (error.status === 404) return ended();
      if (error.status === 401) {
        $("live").textContent = "Needs a key";
        show.error(error);
        return;
      }
      delayMs = Math.min(delayMs * 2, 30000);
    }
    if (state.ended) return;
    $("live").textContent = "Reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

if (sessionId) follow();
else ended();
