// The assistant page (/assist/{session}): follows the shopper's photo, boxes, selected garment and results
// live from the session's event stream, lists what the shopper did, pushes products and chats.
import { api, chat, clockTime, el, garmentName, imageUrl, messenger, readEvents, renderCard } from "./common.js";
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

function logActivity(text, at) {
  const when = at ? el("time", { datetime: at }, clockTime(at)) : null;
  $("activity").prepend(el("li", {}, when, when ? " " : "", text));
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

function onActivity(activity) {
  if (seen(`${activity.at}|${activity.type}|${activity.item_id}|${activity.garment}`)) return;
  const category = (activity.category || "garment").replace(/_/g, " ");
  if (activity.type === "select_garment") {
    logActivity(`Looked at the ${category}`, activity.at);
    state.shopperSelected = activity.garment;
    state.selected = activity.garment;
    render();
  } else if (activity.type === "click") {
    logActivity(`Opened ${productName(activity.item_id)}`, activity.at);
  } else if (activity.type === "add_to_cart") {
    logActivity(`Added ${productName(activity.item_id)} to the cart`, activity.at);
  }
}

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
  } else if (name === "search") {
    logActivity(`Searched a photo: ${describe(data.search)}`);
    await showSearch(data.search, data.photo_url);
  } else if (name === "activity") {
    onActivity(data);
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
  const names = search.garments.map((garment) => (garment.category || "garment").replace(/_/g, " "));
  return names.length ? names.join(", ") : "no garments found";
}

function ended() {
  state.ended = true;
  $("live").textContent = "Ended";
  show.error("This assistant session has expired or does not exist. Ask the shopper for a new link.");
  $("chat-form").querySelector("button").disabled = true;
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
