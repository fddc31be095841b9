// The style quiz on the shopper page, and where its answers live. GET /v1/quiz gives the questions and says
// where the shop keeps the answers: "browser" (in localStorage, sent with each search as `profile`) or
// "server" (POST /v1/profiles; only the profile_id stays in this browser, and searches and events send it).
// Every question can be skipped, and the whole quiz closed; "Your style" reopens it with the answers filled
// in; "Forget me" deletes them everywhere (the shop's copy, this browser's, the assistant's line).
import { ApiError, api, describeError, el } from "./common.js";
import {
  answersOf,
  forgetAll,
  isEmpty,
  keepAnswers,
  keepId,
  keptAnswers,
  keptId,
  noAnswers,
  profileBody,
  returningVisitor,
} from "./style_store.js";

const WHERE_SERVER = "The shop keeps your answers under a random id; only that id stays in this browser.";
const WHERE_BROWSER = "Your answers stay in this browser and go with your searches.";
const LEARN_HINT = "What you open, add to the cart or buy then teaches your style the colours, fits and brands you like.";

const $ = (id) => document.getElementById(id);

function priceText({ price_min: min, price_max: max }) {
  if (min !== null && max !== null) return `${min} to ${max}`;
  if (min !== null) return `from ${min}`;
  return max !== null ? `up to ${max}` : "";
}

function typed(text) {
  return text.split(",").map((part) => part.trim()).filter(Boolean);
}

/**
 * The shopper's style profile. `show` is the page's messenger; `onChange()` runs after the answers were
 * saved or forgotten (share them with the session, search again).
 */
export function styleProfile({ show, onChange }) {
  const dialog = $("quiz");
  const opener = $("style");
  const profile = {
    mode: null, // "browser" | "server", from GET /v1/quiz
    questions: [],
    id: keptId(),
    answers: keptAnswers(),
    returning: returningVisitor(),
  };
  const draft = { answers: noAnswers(), learn: false, step: 0 };
  let loading = null;

  function load() {
    loading ??= api("/v1/quiz").then((quiz) => {
      profile.mode = quiz.profiles === "server" ? "server" : "browser";
      profile.questions = quiz.questions;
      render();
    });
    loading.catch(() => {
      loading = null; // try again next time
    });
    return loading;
  }

  function has() {
    return profile.mode === "server" ? Boolean(profile.id) : !isEmpty(profile.answers);
  }

  function render() {
    opener.classList.toggle("has-style", has());
    $("quiz-forget").hidden = !has();
  }

  function say(text) {
    $("style-status").textContent = text;
  }

  function dropId(why) {
    profile.id = null;
    keepId(null);
    render();
    say(why);
  }

  /** Handle an answer about the stored profile; true when it was dropped (so send again, without it). */
  function dropped(error) {
    if (!(error instanceof ApiError) || !profile.id) return false;
    if (error.code === "profile_not_found") {
      dropId("Your saved style had expired, so it was removed. Take the quiz again under “Your style”.");
      return true;
    }
    if (error.code === "profiles_disabled") {
      profile.mode = "browser";
      dropId("This shop no longer keeps style profiles, so your saved style was removed.");
      return true;
    }
    return false;
  }

  // --- the quiz's steps: one question each, then the answers to review and save -----------------------

  function problem(text) {
    $("quiz-error").textContent = text;
  }

  function describe(error) {
    if (error instanceof ApiError && error.status === 422) return `Some answers were not accepted: ${error.message}`;
    return describeError(error);
  }

  function questionStep(question) {
    const heading = el("h3", { id: "quiz-question", tabindex: "-1" }, question.label);
    const step = el("fieldset", { class: "quiz-step", dataset: { question: question.id } }, el("legend", {}, heading));
    if (question.kind === "price") {
      const field = (id, text, value) =>
        el(
          "div",
          { class: "field" },
          el("label", { for: id }, text),
          el("input", { id, type: "number", min: "0", step: "1", inputmode: "decimal", value: value ?? "" }),
        );
      step.append(
        el(
          "div",
          { class: "quiz-price" },
          field("quiz-price-min", "From", draft.answers.price_min),
          field("quiz-price-max", "To", draft.answers.price_max),
        ),
      );
      return step;
    }
    const chosen = draft.answers[question.id];
    if (question.choices.length) {
      const choice = (value) =>
        el(
          "label",
          { class: "choice" },
          el("input", { type: "checkbox", value, checked: chosen.includes(value) }),
          el("span", {}, value),
        );
      step.append(el("div", { class: "choices" }, ...question.choices.map(choice)));
    }
    if (question.kind === "text") {
      const others = chosen.filter((value) => !question.choices.includes(value));
      const text = question.choices.length ? "Others, separated by commas" : "Names, separated by commas";
      step.append(
        el(
          "div",
          { class: "field" },
          el("label", { for: "quiz-text" }, text),
          el("input", { id: "quiz-text", maxlength: "1000", autocomplete: "off", value: others.join(", ") }),
        ),
      );
    }
    return step;
  }

  function reviewStep() {
    const heading = el("h3", { id: "quiz-question", tabindex: "-1" }, "Your answers");
    const rows = profile.questions.map((question, index) => {
      const answer = question.kind === "price" ? priceText(draft.answers) : draft.answers[question.id].join(", ");
      return el(
        "li",
        { dataset: { question: question.id } },
        el("span", { class: "quiz-label" }, `${question.label}: `),
        el("span", { class: answer ? "quiz-answer" : "quiz-answer skipped" }, answer || "skipped"),
        el(
          "button",
          { type: "button", class: "link", onclick: () => go(index) },
          "Change",
          el("span", { class: "visually-hidden" }, ` ${question.label.toLowerCase()}`),
        ),
      );
    });
    const where = profile.mode === "server" ? WHERE_SERVER : WHERE_BROWSER;
    const step = el(
      "div",
      { class: "quiz-step" },
      heading,
      el("ul", { class: "quiz-review" }, ...rows),
      el("p", { class: "hint" }, where),
    );
    if (profile.mode === "server") {
      const learn = el("input", { id: "quiz-learn", type: "checkbox", checked: draft.learn });
      learn.addEventListener("change", () => {
        draft.learn = learn.checked;
      });
      step.append(
        el("div", { class: "field check" }, learn, el("label", { for: "quiz-learn" }, "Learn from what I click")),
        el("p", { class: "hint" }, LEARN_HINT),
      );
    }
    return step;
  }

  function renderStep() {
    const count = profile.questions.length;
    const review = draft.step === count;
    problem("");
    $("quiz-progress").textContent = review ? "Check and save" : `Question ${draft.step + 1} of ${count}`;
    $("quiz-body").replaceChildren(review ? reviewStep() : questionStep(profile.questions[draft.step]));
    $("quiz-back").hidden = draft.step === 0;
    $("quiz-skip").hidden = review;
    $("quiz-next").textContent = review ? "Save" : draft.step === count - 1 ? "Review" : "Next";
    $("quiz-question").focus();
  }

  /** Keep the shown question's answer in the draft; false (and says why) when it cannot be kept. */
  function collect() {
    const question = profile.questions[draft.step];
    if (!question) return true;
    if (question.kind === "price") {
      const number = (id) => ($(id).value.trim() === "" ? null : Number($(id).value));
      const [min, max] = [number("quiz-price-min"), number("quiz-price-max")];
      if ([min, max].some((value) => value !== null && !(value >= 0))) {
        problem("A price is a number of 0 or more. Fix it, or skip this question.");
        return false;
      }
      if (min !== null && max !== null && min > max) {
        problem("The lowest price is above the highest. Fix one, or skip this question.");
        return false;
      }
      Object.assign(draft.answers, { price_min: min, price_max: max });
      return true;
    }
    const ticked = [...$("quiz-body").querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
    const text = $("quiz-text");
    draft.answers[question.id] = [...new Set([...ticked, ...(text ? typed(text.value) : [])])];
    return true;
  }

  function go(step) {
    draft.step = step;
    renderStep();
  }

  function skip() {
    const question = profile.questions[draft.step];
    if (question.kind === "price") Object.assign(draft.answers, { price_min: null, price_max: null });
    else draft.answers[question.id] = [];
    go(draft.step + 1);
  }

  async function open() {
    show.clear();
    try {
      await load();
    } catch (error) {
      show.error(error);
      return;
    }
    let answers = profile.mode === "server" ? noAnswers() : profile.answers;
    draft.learn = false;
    if (profile.mode === "server" && profile.id) {
      try {
        const saved = await api(`/v1/profiles/${encodeURIComponent(profile.id)}`);
        answers = answersOf(saved);
        draft.learn = saved.learn;
      } catch (error) {
        if (!dropped(error)) {
          show.error(error);
          return;
        }
      }
    }
    draft.answers = answersOf(answers); // a copy: closing the quiz keeps the saved answers
    render();
    if (!dialog.open) dialog.showModal();
    go(isEmpty(draft.answers) ? 0 : profile.questions.length);
  }

  async function save() {
    const answers = answersOf(draft.answers);
    if (profile.mode === "browser") {
      profile.answers = answers;
      keepAnswers(answers);
      const saved = "Your style is saved in this browser. Matches that suit it come first.";
      return finish(isEmpty(answers) ? "No answers kept." : saved);
    }
    if (isEmpty(answers) && !profile.id) return finish("Nothing saved: you skipped every question.");
    const json = { ...profileBody(answers), learn: draft.learn };
    let note = "";
    try {
      if (profile.id) {
        try {
          await api(`/v1/profiles/${encodeURIComponent(profile.id)}`, { method: "PUT", json });
        } catch (error) {
          if (!(error instanceof ApiError && error.code === "profile_not_found")) throw error;
          dropId("");
          note = " (your earlier one had expired)";
        }
      }
      if (!profile.id) {
        const created = await api("/v1/profiles", { method: "POST", json });
        profile.id = created.profile_id;
        keepId(profile.id);
      }
    } catch (error) {
      if (error instanceof ApiError && error.code === "profiles_disabled") {
        profile.mode = "browser"; // the shop stopped keeping profiles: keep the answers here instead
        if (profile.id) dropId("");
        await save();
        say("This shop keeps no style profiles, so your style is saved in this browser instead.");
        return;
      }
      if (error instanceof ApiError && error.status === 401) {
        dialog.close();
        show.error(error); // the access-key form is on the page
        return;
      }
      problem(describe(error));
      return;
    }
    finish(`Your style is saved${note}. Matches that suit it come first.`);
  }

  function finish(text) {
    render();
    dialog.close();
    say(text);
    onChange();
  }

  async function forget() {
    if (profile.mode === "server" && profile.id) {
      try {
        await api(`/v1/profiles/${encodeURIComponent(profile.id)}`, { method: "DELETE" });
      } catch (error) {
        if (!(error instanceof ApiError && error.code === "profile_not_found")) {
          problem(`Your style could not be deleted: ${describe(error)}`);
          return;
        }
      }
    }
    forgetAll();
    Object.assign(profile, { id: null, answers: noAnswers(), returning: false });
    finish("Forgotten: your style answers are deleted, here and at the shop.");
  }

  async function next(event) {
    event.preventDefault();
    if (draft.step === profile.questions.length) {
      const button = $("quiz-next");
      button.disabled = true;
      try {
        await save();
      } finally {
        button.disabled = false;
      }
    } else if (collect()) {
      go(draft.step + 1);
    }
  }

  opener.addEventListener("click", open);
  $("quiz-form").addEventListener("submit", next);
  $("quiz-skip").addEventListener("click", skip);
  $("quiz-back").addEventListener("click", () => collect() && go(draft.step - 1));
  $("quiz-close").addEventListener("click", () => dialog.close());
  $("quiz-forget").addEventListener("click", forget);
  dialog.addEventListener("close", () => opener.focus());
  load().catch(() => {}); // the mode, for the first search; a failure is reported when the quiz is opened

  /** The profile as sent with a search: {profile_id} (server), {profile} (browser answers), or {}. */
  async function current() {
    try {
      await load();
    } catch {
      return {};
    }
    if (profile.mode === "server") return profile.id ? { profile_id: profile.id } : {};
    return isEmpty(profile.answers) ? {} : { profile: profileBody(profile.answers) };
  }

  return {
    dropped,
    /** The search's form fields for the profile. */
    async searchFields() {
      const given = await current();
      return given.profile ? { profile: JSON.stringify(given.profile) } : given;
    },
    /** An event's profile field (server mode: learning, when the shopper opted in). */
    eventFields() {
      return profile.mode === "server" && profile.id ? { profile_id: profile.id } : {};
    },
    /** What a co-viewing session is told: PUT /v1/sessions/{id}/profile's body (no profile: no line). */
    async shared() {
      return { ...(await current()), returning: profile.returning };
    },
  };
}
