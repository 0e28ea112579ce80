// alinea feedback pages: keyboard shortcuts, the time spent on an item, drag-and-drop ranking, the chat client.
// Every form also works without this file; it only adds speed. No framework, no external script.
"use strict";

const csrfToken = () => document.body.dataset.csrf || "";
const typing = (el) => el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
  (el.tagName === "INPUT" && !["radio", "checkbox", "button", "submit"].includes(el.type)));

// --- language menu and other selects that submit on change --------------------------------------------------------
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-autosubmit]")) event.target.form.submit();
});

// --- time spent: from the page showing the item to the submission ---------------------------------------------------
const shownAt = performance.now();
for (const form of document.querySelectorAll("form[data-timer]")) {
  form.addEventListener("submit", () => {
    form.elements.time_spent_ms.value = String(Math.round(performance.now() - shownAt));
  });
}

// --- keyboard shortcuts ---------------------------------------------------------------------------------------------
// Elements with data-key="x" are pressed by the key x. Fieldsets with data-step are answered in order: a key first
// looks inside the current step (so the digits pick A/B first, then the strength); a choice moves to the next step
// unless it has data-skip-next (a tie has no strength). Enter submits; s jumps to the skip reason.
const judgeForm = document.querySelector("form.judge");
const steps = judgeForm ? [...judgeForm.querySelectorAll("fieldset[data-step]")] : [];
let step = 0;

function showStep() {
  steps.forEach((fieldset, i) => fieldset.classList.toggle("current", i === step));
}

function press(el) {
  if (el.tagName === "SELECT") { el.focus(); return; }
  el.click();
  const fieldset = el.closest("fieldset[data-step]");
  if (fieldset && steps.indexOf(fieldset) === step && el.type === "radio") {
    step = el.hasAttribute("data-skip-next") ? steps.length : Math.min(step + 1, steps.length);
    showStep();
  }
}

function findKeyed(key) {
  const scope = document.querySelector("main");
  const current = steps[step];
  const inStep = current && current.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (inStep) return inStep;
  return [...scope.querySelectorAll(`[data-key="${CSS.escape(key)}"]`)]
    .find((el) => !el.closest("fieldset[data-step]") || !steps.length);
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (typing(document.activeElement)) {
    if (event.key === "Escape") document.activeElement.blur();
    return;
  }
  if (ranking && rankingKey(event)) { event.preventDefault(); return; }
  // Enter submits the task form, or on the chat page the pick form while two answers wait for a pick.
  const enterForm = judgeForm || document.querySelector("form[data-chat-pick]:not([hidden])");
  if (event.key === "Enter" && enterForm) {
    event.preventDefault();
    enterForm.requestSubmit();
    return;
  }
  const el = findKeyed(event.key);
  if (el) { event.preventDefault(); press(el); }
});

const help = document.querySelector("[data-shortcut-help]");
if (help) {
  const seen = new Set();
  const list = document.createElement("ul");
  for (const el of document.querySelectorAll("main [data-key]")) {
    // A select's label would also read out every option: name it by its label's own text and its key instead.
    const text = el.tagName === "SELECT"
      ? `${(el.closest("label") || el).textContent.replace(el.textContent, "")} ${el.dataset.key}`
      : (el.closest("label") || el).textContent;
    const label = text.trim().replace(/\s+/g, " ");
    if (seen.has(label)) continue;
    seen.add(label);
    const item = document.createElement("li");
    item.textContent = label;
    list.append(item);
  }
  help.append(list);
}
showStep();

// --- ranking: drag and drop, or keys (a number selects a card, arrows move it, "=" ties it with the one above) ------
const ranking = document.querySelector("[data-ranking]");
let selectedCard = null;

function cards() { return [...ranking.querySelectorAll("li.response")]; }

function writeRanks() {
  // Standard competition ranking: the card's place, or the rank of the card above when tied to it (1, 1, 3, ...).
  let previous = 0;
  cards().forEach((card, index) => {
    const rank = card.dataset.tied === "1" && index > 0 ? previous : index + 1;
    card.querySelector("select").value = String(rank);
    previous = rank;
  });
}

function select(card) {
  cards().forEach((c) => c.classList.toggle("selected", c === card));
  selectedCard = card;
  if (card) card.focus();
}

function rankingKey(event) {
  const list = cards();
  if (/^[1-9]$/.test(event.key)) {
    const card = list.find((c) => c.dataset.position === String(Number(event.key) - 1));
    if (card) { select(card); return true; }
  }
  if (!selectedCard) return false;
  if (event.key === "ArrowUp" && selectedCard.previousElementSibling) {
    ranking.insertBefore(selectedCard, selectedCard.previousElementSibling);
  } else if (event.key === "ArrowDown" && selectedCard.nextElementSibling) {
    ranking.insertBefore(selectedCard.nextElementSibling, selectedCard);
  } else if (event.key === "=") {
    selectedCard.dataset.tied = selectedCard.dataset.tied === "1" ? "0" : "1";
    selectedCard.classList.toggle("tied", selectedCard.dataset.tied === "1");
  } else {
    return false;
  }
  writeRanks();
  selectedCard.focus();
  return true;
}

if (ranking) {
  let dragged = null;
  ranking.addEventListener("dragstart", (event) => {
    dragged = event.target.closest("li.response");
    dragged.classList.add("dragging");
  });
  ranking.addEventListener("dragend", () => { dragged.classList.remove("dragging"); dragged = null; writeRanks(); });
  ranking.addEventListener("dragover", (event) => {
    event.preventDefault();
    const over = event.target.closest("li.response");
    if (!dragged || !over || over === dragged) return;
    const box = over.getBoundingClientRect();
    ranking.insertBefore(dragged, event.clientY < box.top + box.height / 2 ? over : over.nextElementSibling);
  });
  ranking.addEventListener("click", (event) => {
    const card = event.target.closest("li.response");
    if (card && !event.target.closest("select")) select(card);
  });
}

// --- chat with the live model (JSON API, CSRF token in a header) ------------------------------------------------------
const chatBox = document.querySelector("[data-chat]");
if (chatBox) {
  const project = chatBox.dataset.project;
  const log = chatBox.querySelector("[data-chat-log]");
  const pending = chatBox.querySelector("[data-chat-pending]");
  const pickForm = chatBox.querySelector("[data-chat-pick]");
  const sendForm = chatBox.querySelector("[data-chat-send]");
  const errorLine = chatBox.querySelector("[data-chat-error]");
  let chatId = null;

  async function call(method, path, body) {
    const response = await fetch(path, {
      method, headers: { "content-type": "application/json", "x-csrf-token": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin",
    });
    const data = response.status === 204 ? null : await response.json();
    if (!response.ok) throw new Error(data && data.detail ? data.detail : `HTTP ${response.status}`);
    return data;
  }

  function show(conversation) {
    chatId = conversation.id;
    log.replaceChildren(...conversation.messages.map((m) => {
      const turn = document.createElement("div");
      turn.className = `turn ${m.role}`;
      const text = document.createElement("div");
      text.className = "text";
      text.textContent = m.content;  // text, never HTML
      turn.append(text);
      return turn;
    }));
    const waiting = Array.isArray(conversation.pending);
    pending.hidden = !waiting;
    pickForm.hidden = !waiting;
    sendForm.hidden = waiting;
    if (waiting) {
      pending.querySelectorAll(".text").forEach((el, i) => { el.textContent = conversation.pending[i]; });
      pickForm.reset();
    }
  }

  async function run(action) {
    errorLine.hidden = true;
    try { show(await action()); } catch (err) { errorLine.textContent = err.message; errorLine.hidden = false; }
  }

  sendForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = sendForm.elements.content.value;
    run(async () => {
      if (chatId === null) chatId = (await call("POST", `/api/v1/projects/${project}/chats`, {})).id;
      const conversation = await call("POST", `/api/v1/chats/${chatId}/messages`, { content });
      sendForm.elements.content.value = "";
      return conversation;
    });
  });
  pickForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const f = pickForm.elements;
    const thumb = f.thumb.value || null;
    run(() => call("POST", `/api/v1/chats/${chatId}/pick`, {
      choice: f.choice.value, strength: f.choice.value === "tie" ? 0 : Number(f.strength.value),
      both_bad: f.both_bad.checked, thumb, comment: f.comment.value,
    }));
  });
  chatBox.querySelector("[data-chat-new]").addEventListener("click", () => {
    chatId = null;
    show({ id: null, messages: [], pending: null });
  });
}
