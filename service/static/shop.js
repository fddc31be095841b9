// The shopper page: photo -> garment boxes (the first one selected) -> matches; a box the shopper draws is
// searched instead when detection missed a garment; filters and a text refinement re-run the search with the
// same photo (and box); "Ask an assistant" opens a co-viewing session (pushed products and chat); "Your style"
// opens the style quiz (quiz.js), whose profile goes with searches, events and the session.
import { ApiError, api, chat, el, garmentName, messenger, readEvents, renderCard } from "./common.js";
import { renderPhoto } from "./photo.js";
import { enableDrawing } from "./draw.js";
import { styleProfile } from "./quiz.js";
import { cartControls, viewTracker } from "./cart.js";

const $ = (id) => document.getElementById(id);
const show = messenger($("status"), $("error"), () => state.file && runSearch());
const SESSION_STORAGE = "fashion.session";

const state = {
  file: null, // the photo being searched (a File)
  photoUrl: null, // its object URL for display
  search: null, // the last search response
  selected: null, // garment index
  region: null, // [x0, y0, x1, y1] the shopper drew, in upload pixels; null: detect the garments
  drawing: false, // "Draw a box" is armed
  session: null, // {session_id, assist_url}
  stream: null, // AbortController of the session's event stream
  pushed: new Map(), // item_id -> push
  noticeTarget: null, // where the banner's "Show" goes
};

const sessionPath = () => state.session && `/v1/sessions/${encodeURIComponent(state.session.session_id)}`;
const addMessage = chat($("chat"), { sender: "shopper", partner: "assistant", heading: "h3", sessionPath, show });
const style = styleProfile({ show, onChange: styleChanged });
const cart = cartControls(
  (type, product, category) => postEvent(type, product.item_id, category, state.selected),
  show.status,
);
const views = viewTracker((product, category, dwellS) =>
  postEvent("view_item", product.item_id, category, state.selected, { dwell_s: dwellS }),
);

// --- search ---------------------------------------------------------------------------------------

function filters() {
  const result = {};
  const min = $("price-min").value;
  const max = $("price-max").value;
  if (min !== "") result.price_min = Number(min);
  if (max !== "") result.price_max = Number(max);
  if ($("in-stock").checked) result.in_stock = true;
  return result;
}

async function runSearch() {
  if (!state.file) return;
  const form = new FormData();
  form.append("image", state.file, state.file.name || "photo.jpg");
  const text = $("refine-text").value.trim();
  if (text) form.append("text", text);
  const chosen = filters();
  if (Object.keys(chosen).length) form.append("filters", JSON.stringify(chosen));
  if (state.session) form.append("session_id", state.session.session_id);
  const region = state.region;
  if (region) form.append("region", JSON.stringify(region));
  show.clear();
  show.status(region ? "Looking for products like the area you drew…" : "Looking for garments and similar products…");
  document.body.setAttribute("aria-busy", "true");
  let again = false;
  try {
    for (const [name, value] of Object.entries(await style.searchFields())) form.append(name, value);
    const search = await api("/v1/search", { method: "POST", form });
    const same = state.search && state.search.photo === state.file && state.search.region === region;
    state.search = { ...search, photo: state.file, region };
    // The detector orders the garments: the first is the one to show, without a tap.
    if (!same || state.selected === null || state.selected >= search.garments.length) {
      state.selected = search.garments.length ? 0 : null;
    }
    renderSearch();
    const garment = search.garments[state.selected];
    if (state.session && garment) postEvent("select_garment", null, garment.category, state.selected);
  } catch (error) {
    show.status("");
    again = style.dropped(error); // an expired style profile: search again without it
    if (!again) show.error(error);
    // A box that failed is not kept for the next search (refine, filters): the last shown one is.
    if (state.search && state.search.photo === state.file) state.region = state.search.region;
    if (error instanceof ApiError && error.code === "session_not_found") endSession();
  } finally {
    document.body.removeAttribute("aria-busy");
  }
  if (again) await runSearch();
}

function renderSearch() {
  const { garments, region } = state.search;
  $("photo-panel").hidden = false;
  $("all-garments").hidden = !region;
  renderPhoto($("frame"), state.photoUrl, state.search, state.selected, selectGarment);
  if (state.drawing) {
    $("photo-hint").textContent = DRAW_HINT;
  } else if (region) {
    $("photo-hint").textContent = "Showing matches for the area you drew. Draw another box, or show all garments.";
    show.status(`Searched the area you drew: ${garmentName(garments, 0)}.`);
  } else if (!garments.length) {
    $("photo-hint").textContent = "We found no garments in this photo. Draw a box around one, or try a photo where the clothes are clearly visible.";
    show.status("No garments found.");
  } else {
    const names = garments.map((garment) => (garment.category || "garment").replace(/_/g, " "));
    $("photo-hint").textContent = "Tap a garment to see matching products, or draw a box around one we missed.";
    show.status(`Found ${garments.length} garment${garments.length === 1 ? "" : "s"}: ${names.join(", ")}.`);
  }
  renderResults();
}

function selectGarment(index, event) {
  state.selected = index;
  renderPhoto($("frame"), state.photoUrl, state.search, state.selected, selectGarment);
  $("frame").querySelector(`[data-garment="${index}"]`).focus();
  renderResults();
  const garment = state.search.garments[index];
  postEvent("select_garment", null, garment.category, index);
  if (event && event.detail > 0) scrollTo($("results")); // a tap, not the keyboard: bring the matches up
}

function renderResults() {
  const results = $("results");
  const cards = $("cards");
  cards.replaceChildren();
  if (!state.search || state.selected === null) {
    results.hidden = true;
    return;
  }
  results.hidden = false;
  const garment = state.search.garments[state.selected];
  $("results-title").textContent = `Matches for the ${garmentName(state.search.garments, state.selected)}`;
  const matches = garment.matches;
  $("results-count").textContent = matches.length
    ? `${matches.length} product${matches.length === 1 ? "" : "s"}`
    : "No products match. Try removing a filter or changing the refinement.";
  for (const match of matches) {
    const card = productCard(match, garment.category);
    if (state.pushed.has(match.item_id)) {
      card.classList.add("pushed");
      card.prepend(el("p", { class: "badge" }, "Suggested by your assistant"));
    }
    cards.append(card);
  }
}

function productCard(product, category, note) {
  const card = renderCard(product, {
    note,
    explanation: product.profile_match?.explanation,
    onOpen: () => {
      postEvent("click", product.item_id, category, state.selected);
      views.opened(product, category);
    },
    actions: cart.actions(product, category),
  });
  cart.sync(card);
  return card;
}

// --- drawing a box ---------------------------------------------------------------------------------

const DRAW_HINT = "Drag across the garment you want to search.";

function armDrawing(on) {
  state.drawing = on;
  $("draw").setAttribute("aria-pressed", String(on));
  $("frame").classList.toggle("drawing", on);
  if (on) $("photo-hint").textContent = DRAW_HINT;
  else if (state.search) renderSearch();
}

function searchRegion(region) {
  state.region = region;
  armDrawing(false);
  runSearch();
}

function showAllGarments() {
  state.region = null;
  runSearch();
}

// --- shopper signals --------------------------------------------------------------------------------

async function postEvent(type, itemId, category, garment, extra = {}) {
  const session = state.session?.session_id ?? null;
  const body = { type, item_id: itemId, category, garment, session_id: session, ...style.eventFields(), ...extra };
  try {
    await api("/v1/events", { method: "POST", json: body, keepalive: true });
  } catch (error) {
    if (error instanceof ApiError && error.code === "session_not_found") endSession();
    else if (style.dropped(error)) postEvent(type, itemId, category, garment, extra); // without the profile
    else if (error instanceof ApiError && error.status === 401) show.error(error);
  }
}

// --- the style profile --------------------------------------------------------------------------------

/** Tell the session who the shopper is: the profile (the assistant sees its one line) and a return visit. */
async function shareProfile() {
  if (!state.session) return;
  const path = `${sessionPath()}/profile`;
  try {
    await api(path, { method: "PUT", json: await style.shared() });
  } catch (error) {
    if (error instanceof ApiError && error.code === "session_not_found") endSession();
    else if (style.dropped(error)) await shareProfile();
    else show.error(error);
  }
}

function styleChanged() {
  shareProfile();
  if (state.file) runSearch(); // the matches follow the new answers
}

// --- co-viewing session -------------------------------------------------------------------------------

async function askAssistant() {
  if (state.session) {
    $("assist-link").focus();
    return;
  }
  show.clear();
  try {
    startSession(await api("/v1/sessions", { method: "POST", json: {} }));
  } catch (error) {
    show.error(error);
    return;
  }
  show.status("Assistant session started. Share the link below.");
  $("assist-link").focus();
  $("assist-link").select();
  if (state.file) await runSearch(); // so the assistant sees the photo and the chosen garment too
}

function startSession(session) {
  state.session = session;
  sessionStorage.setItem(SESSION_STORAGE, JSON.stringify(session));
  $("session").hidden = false;
  $("assist-link").value = new URL(session.assist_url, location.origin).href;
  $("ask").textContent = "Assistant link";
  follow(session.session_id);
  shareProfile();
}

function endSession(reason = "Your assistant session has ended.") {
  if (!state.session) return;
  state.stream?.abort();
  state.session = null;
  sessionStorage.removeItem(SESSION_STORAGE);
  $("session").hidden = true;
  $("ask").textContent = "Ask an assistant";
  show.status(reason);
}

async function follow(sessionId) {
  let delayMs = 1000;
  while (state.session && state.session.session_id === sessionId) {
    const abort = new AbortController();
    state.stream = abort;
    try {
      await readEvents(`${sessionPath()}/stream`, onSessionEvent, abort.signal);
      if (abort.signal.aborted) return;
      delayMs = 1000; // the server closed a healthy stream: reconnect
    } catch (error) {
      if (error.status === 404) return endSession();
      if (error.status === 401) return show.error(error);
      delayMs = Math.min(delayMs * 2, 30000);
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

function onSessionEvent(name, data) {
  if (name === "snapshot") {
    data.messages.forEach(addMessage);
    data.pushed.forEach(addPush);
  } else if (name === "message") {
    if (addMessage(data) && data.sender === "assistant") notify("New message from your assistant.", $("chat"));
  } else if (name === "push") {
    if (addPush(data)) notify(`Your assistant suggests ${data.item.title}.`, $("suggestions"));
  } else if (name === "expired") {
    endSession();
  }
}

/** Show a pushed product (answers false when it is already shown). */
function addPush(push) {
  if (state.pushed.has(push.item.item_id) && state.pushed.get(push.item.item_id).id >= push.id) return false;
  state.pushed.set(push.item.item_id, push);
  $("suggestions").hidden = false;
  const list = $("suggested");
  list.querySelector(`[data-item="${CSS.escape(push.item.item_id)}"]`)?.remove();
  const card = productCard(push.item, push.item.category, push.note);
  card.classList.add("pushed");
  list.prepend(card);
  renderResults();
  return true;
}

function scrollTo(target) {
  const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
  target.scrollIntoView({ behavior: still ? "auto" : "smooth", block: "start" });
}

/** A banner under the page header for news that arrives off-screen; "Show" scrolls to it. */
function notify(text, target) {
  const box = target.getBoundingClientRect();
  if (box.bottom > 0 && box.top < innerHeight) return; // (partly) in view already
  $("notice-text").textContent = text;
  $("notice").hidden = false;
  state.noticeTarget = target;
}

// The banner goes once the shopper sees what it announced, however they got there.
const noticeSeen = new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting && entry.target === state.noticeTarget)) $("notice").hidden = true;
});
noticeSeen.observe($("suggestions"));
noticeSeen.observe($("chat"));

function showNotice() {
  $("notice").hidden = true;
  const target = state.noticeTarget;
  scrollTo(target);
  target.querySelector("h3, h2").focus({ preventScroll: true });
}

async function copyLink() {
  const link = $("assist-link");
  try {
    await navigator.clipboard.writeText(link.value);
  } catch {
    link.select();
    document.execCommand("copy"); // older browsers, or a page not served over https
  }
  $("copy-status").textContent = "Link copied.";
}

// --- wiring -------------------------------------------------------------------------------------------

function choosePhoto(input) {
  const file = input.files[0];
  input.value = ""; // choosing the same file again still searches
  if (!file) return;
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.file = file;
  state.photoUrl = URL.createObjectURL(file);
  state.region = null;
  state.drawing = false;
  $("draw").setAttribute("aria-pressed", "false");
  $("frame").classList.remove("drawing");
  runSearch();
}

$("photo-file").addEventListener("change", (event) => choosePhoto(event.target));
$("photo-camera").addEventListener("change", (event) => choosePhoto(event.target));
$("refine").addEventListener("submit", (event) => {
  event.preventDefault();
  runSearch();
});
$("ask").addEventListener("click", askAssistant);
$("copy-link").addEventListener("click", copyLink);
if (navigator.share) {
  $("share-link").hidden = false; // phones: the system share sheet (messaging apps, e-mail)
  $("share-link").addEventListener("click", () =>
    navigator.share({ title: "Help me choose", url: $("assist-link").value }).catch(() => {}),
  );
}
$("notice-show").addEventListener("click", showNotice);
$("draw").addEventListener("click", () => armDrawing(!state.drawing));
$("all-garments").addEventListener("click", showAllGarments);
enableDrawing($("frame"), {
  imageSize: () => state.search?.image_size,
  armed: () => state.drawing,
  onRegion: searchRegion,
  onSmall: () => show.status("That box is too small to search. Drag across the whole garment."),
});
$("frame")
  .querySelector("img")
  .addEventListener("error", () => {
    if (state.photoUrl) show.error("Your browser cannot display this photo, but the garments were still found.");
  });

const saved = sessionStorage.getItem(SESSION_STORAGE);
if (saved) {
  // A reload keeps the session (chat and suggestions) while it lives.
  const session = JSON.parse(saved);
  api(`/v1/sessions/${encodeURIComponent(session.session_id)}`)
    .then(() => startSession(session))
    .catch(() => sessionStorage.removeItem(SESSION_STORAGE));
}
