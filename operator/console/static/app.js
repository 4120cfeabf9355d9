// certmodel console: vanilla JS, no build step. Data is rendered with textContent only.
"use strict";

const TOKEN_KEY = "certmodel.token";
const NS_KEY = "certmodel.namespace";
const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

let namespace = "";
let lastJson = "";
let timer = null;
let busy = false;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store", credentials: "omit",
  });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const err = new Error((data && data.error) || resp.status + " " + resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function notice(text, kind) {
  const box = $("notice");
  box.textContent = text || "";
  box.className = kind || "";
  box.hidden = !text;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmtLoss = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(4));
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "–");
const nsPath = () => "/api/namespaces/" + encodeURIComponent(namespace);
const linePath = (line) => nsPath() + "/lines/" + encodeURIComponent(line);

function badge(text, kind) { return el("span", { class: "badge " + kind }, text); }

async function act(button, fn, done) {
  button.disabled = true;
  try {
    await fn();
    notice(done, "ok");
    await refresh(true);
  } catch (e) {
    notice(e.message, "error");
    button.disabled = false;
  }
}

function setCurrent(line, dna, button) {
  act(button, () => api("POST", linePath(line.name) + "/current", { dna }),
    `${line.name}: CURRENT set to ${dna}`);
}

function rollBack(line, button) {
  act(button, () => api("POST", linePath(line.name) + "/rollback",
    { expectedCurrent: line.current }),
    `${line.name}: rolled back to ${line.previous}`);
}

async function download(line, dna, button) {
  button.disabled = true;
  try {
    const ticket = await api("POST",
      linePath(line.name) + "/versions/" + encodeURIComponent(dna) + "/ticket", {});
    const a = el("a", { href: ticket.url, download: dna + ".tar", hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    notice(`downloading ${dna}.tar`, "ok");
  } catch (e) {
    notice(e.message, "error");
  } finally {
    button.disabled = false;
  }
}

function renderLine(line) {
  const ready = line.ready;
  const readyKind = ready.status === "True" ? "good" : ready.status === "False" ? "bad" : "";
  const rollback = el("button", {
    type: "button", class: "rollback", disabled: !line.canRollback,
    title: line.previous ? "CURRENT back to " + line.previous : "no previous version",
    onclick: (ev) => rollBack(line, ev.currentTarget),
  }, "Roll back");
  const rows = line.versions.map((v) => {
    const tags = el("span", {},
      v.current ? badge("CURRENT", "current") : null,
      v.previous ? badge("previous", "") : null);
    const actions = el("td", { class: "actions" },
      el("button", {
        type: "button", class: "set-current", disabled: v.current || !v.verified,
        onclick: (ev) => setCurrent(line, v.dna, ev.currentTarget),
      }, "Set as CURRENT"),
      el("button", {
        type: "button", class: "download", disabled: !v.verified,
        onclick: (ev) => download(line, v.dna, ev.currentTarget),
      }, "Download"));
    return el("tr", { "data-dna": v.dna, class: v.current ? "is-current" : "" },
      el("td", {}, el("code", { class: "dna" }, v.dna), " ", tags),
      el("td", {}, fmtTime(v.created)),
      el("td", {}, v.kind || "–"),
      el("td", {}, fmtLoss(v.evalLoss)),
      el("td", {}, fmtLoss(v.trainLoss)),
      el("td", { class: "verified" }, v.verified ? badge("verified", "good") : badge("failed", "bad")),
      el("td", {}, v.signed ? "signed" : "–"),
      el("td", {}, v.training || "–"),
      actions);
  });
  const history = line.history.map((h) =>
    el("li", {}, `#${h.revision} ${h.reason}: ${h.from || "nothing"} → ${h.to || "nothing"} (${fmtTime(h.at)})`));
  return el("article", { class: "line", "data-line": line.name },
    el("h3", {}, line.name, " ", badge("Ready: " + ready.status, readyKind)),
    el("dl", {},
      el("dt", {}, "Base model"), el("dd", {}, line.baseModel),
      el("dt", {}, "Policy"), el("dd", {}, line.policy),
      el("dt", {}, "CURRENT"), el("dd", { class: "current" }, line.current || "none"),
      el("dt", {}, "Previous"), el("dd", { class: "previous" }, line.previous || "none"),
      el("dt", {}, "Revision"), el("dd", { class: "revision" }, line.revision ?? "–"),
      el("dt", {}, "Serving"), el("dd", {},
        `${line.serving.onCurrent}/${line.serving.pods} pods on CURRENT` +
        (line.serving.converged ? " (converged)" : " (converging)") +
        (line.serving.refused.length ? "; refused: " + line.serving.refused.join(", ") : "")),
      el("dt", {}, "Status"), el("dd", { class: "message" },
        ready.message + (line.reconciled ? "" : " (operator has not caught up with the spec yet)"))),
    el("div", { class: "line-actions" }, rollback,
      line.policy === "Latest" ? el("span", { class: "muted" },
        " Buttons switch this line to the Manual policy.") : null),
    el("table", { class: "versions" },
      el("thead", {}, el("tr", {}, ...["Version (DNA)", "Created", "Kind", "Eval loss",
        "Train loss", "Verification", "Signature", "Training", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)),
    history.length ? el("details", {}, el("summary", {}, "Pointer history"), el("ul", {}, ...history)) : null);
}

function renderTraining(t) {
  const pct = t.percent === null ? 0 : t.percent;
  const progress = el("td", { class: "progress" },
    el("progress", { max: 100, value: pct }),
    t.totalSteps ? ` ${t.step}/${t.totalSteps}` : " –");
  return el("tr", { "data-training": t.name, class: "phase-" + t.phase.toLowerCase() },
    el("td", {}, t.name), el("td", {}, t.line), el("td", { class: "phase" }, t.phase),
    progress, el("td", {}, fmtLoss(t.loss)), el("td", {}, t.eta || "–"),
    el("td", {}, t.dna ? el("code", {}, t.dna) : "–"), el("td", { class: "message" }, t.message));
}

function render(data) {
  const lines = $("lines");
  lines.replaceChildren(...(data.lines.length ? data.lines.map(renderLine)
    : [el("p", { class: "muted" }, "No model lines in this namespace.")]));
  $("trainings").tBodies[0].replaceChildren(...data.trainings.map(renderTraining));
}

async function refresh(force) {
  if (!namespace || (busy && !force)) return;
  busy = true;
  try {
    const data = await api("GET", nsPath() + "/overview");
    const json = JSON.stringify(data);
    if (force || json !== lastJson) { lastJson = json; render(data); }
    $("updated").textContent = new Date().toLocaleTimeString();
    if ($("notice").className === "stale") notice("");
  } catch (e) {
    if (e.status === 401) { signOut("Your token was refused: " + e.message); return; }
    notice(e.message, e.status === 403 ? "error" : "stale");
  } finally {
    busy = false;
  }
}

function chooseNamespace(ns) {
  namespace = ns;
  sessionStorage.setItem(NS_KEY, ns);
  lastJson = "";
  refresh(true);
}

async function start() {
  let me;
  try {
    me = await api("GET", "/api/whoami");
  } catch (e) {
    signOut(e.message);
    return;
  }
  $("signin").hidden = true;
  $("session").hidden = false;
  $("content").hidden = false;
  $("who").textContent = me.user;
  const select = $("namespace-select");
  const input = $("namespace-input");
  const saved = sessionStorage.getItem(NS_KEY);
  if (me.namespaces) {
    select.replaceChildren(...me.namespaces.map((n) => el("option", { value: n }, n)));
    select.hidden = false; input.hidden = true;
    select.value = me.namespaces.includes(saved) ? saved : me.namespaces[0];
    select.onchange = () => chooseNamespace(select.value);
    chooseNamespace(select.value);
  } else {
    select.hidden = true; input.hidden = false;
    input.value = saved || "default";
    input.onchange = () => chooseNamespace(input.value.trim());
    chooseNamespace(input.value);
  }
  clearInterval(timer);
  timer = setInterval(() => refresh(false), REFRESH_MS);
}

function signOut(message) {
  clearInterval(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  namespace = ""; lastJson = "";
  $("signin").hidden = false;
  $("session").hidden = true;
  $("content").hidden = true;
  notice(message || "", message ? "error" : "");
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    notice("");
    start();
  });
  $("signout").addEventListener("click", () => signOut(""));
  if (token()) start();
});
