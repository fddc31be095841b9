// What the shopper page keeps of the shopper (quiz.js): in server mode only the style profile's id, in
// browser mode the quiz's answers (as ProfileIn JSON), and when this browser first visited (to tell the
// assistant of a returning visitor). "Forget me" removes all three.

const ANSWERS_STORAGE = "fashion.style"; // browser mode: the answers
const ID_STORAGE = "fashion.styleId"; // server mode: the profile_id, nothing else
const FIRST_VISIT_STORAGE = "fashion.firstVisit"; // when this browser first came
const VISIT_STORAGE = "fashion.visit"; // sessionStorage: "first" or "returning", fixed for this tab's visit
const LISTS = ["colours", "avoid_colours", "fits", "styles", "brands", "sizes"];

function read(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null; // storage blocked: nothing kept
  }
}

function write(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, value);
  } catch {
    // storage blocked: the answers last as long as the page
  }
}

/** Whether this browser came before this tab's visit began; remembers the first visit's time. */
export function returningVisitor() {
  let visit = read(sessionStorage, VISIT_STORAGE);
  if (!visit) {
    visit = read(localStorage, FIRST_VISIT_STORAGE) ? "returning" : "first";
    write(sessionStorage, VISIT_STORAGE, visit);
  }
  if (!read(localStorage, FIRST_VISIT_STORAGE)) write(localStorage, FIRST_VISIT_STORAGE, new Date().toISOString());
  return visit === "returning";
}

export function noAnswers() {
  const lists = Object.fromEntries(LISTS.map((name) => [name, []]));
  return { ...lists, price_min: null, price_max: null };
}

/** The answers of a ProfileIn-like object (stored JSON, or GET /v1/profiles/{id}); a fresh copy. */
export function answersOf(source) {
  const answers = noAnswers();
  if (!source || typeof source !== "object") return answers;
  for (const name of LISTS) if (Array.isArray(source[name])) answers[name] = source[name].map(String);
  for (const name of ["price_min", "price_max"]) if (typeof source[name] === "number") answers[name] = source[name];
  return answers;
}

export function isEmpty(answers) {
  return LISTS.every((name) => !answers[name].length) && answers.price_min === null && answers.price_max === null;
}

/** The answers as ProfileIn: only what was answered. */
export function profileBody(answers) {
  const kept = {};
  for (const name of LISTS) if (answers[name].length) kept[name] = answers[name];
  if (answers.price_min !== null) kept.price_min = answers.price_min;
  if (answers.price_max !== null) kept.price_max = answers.price_max;
  return kept;
}

export function keptAnswers() {
  try {
    return answersOf(JSON.parse(read(localStorage, ANSWERS_STORAGE)));
  } catch {
    return noAnswers();
  }
}

export function keepAnswers(answers) {
  write(localStorage, ANSWERS_STORAGE, isEmpty(answers) ? null : JSON.stringify(profileBody(answers)));
}

export function keptId() {
  return read(localStorage, ID_STORAGE);
}

export function keepId(id) {
  write(localStorage, ID_STORAGE, id);
}

/** Forget me: nothing of the shopper stays in this browser (this tab counts as a first visit again). */
export function forgetAll() {
  for (const key of [ID_STORAGE, ANSWERS_STORAGE, FIRST_VISIT_STORAGE]) write(localStorage, key, null);
  write(sessionStorage, VISIT_STORAGE, "first");
}
