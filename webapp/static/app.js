// The page without reloads. Every form works without this file (plain POSTs answered with the
// whole page); with it, the forms call the JSON API and the page is updated in place. Loaded as a
// file (never inline) so the Content-Security-Policy can forbid inline scripts.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("summarize-form");
  if (!form) return;
  const body = $("body");
  const url = $("issue-url");
  const currentTitle = $("current-title");
  const submit = $("submit");
  const errorBox = $("error");
  const result = $("result");
  const copy = $("copy");
  const feedbackForm = $("feedback-form");
  const feedbackStatus = $("feedback-status");
  let busy = false;

  class Unreachable extends Error {}

  async function call(method, path, payload) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: payload === undefined ? undefined : JSON.stringify(payload),
      });
    } catch {
      throw new Unreachable("the app could not be reached; check the connection and try again");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      // not JSON (a proxy's page, say): the status below says what happened
    }
    if (!response.ok) {
      throw new Error(data && data.error ? data.error : `the server answered ${response.status}`);
    }
    return data;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.textContent = "";
    errorBox.hidden = true;
  }

  function setBusy(value) {
    busy = value;
    submit.disabled = value;
    submit.textContent = value ? "Suggesting…" : "Suggest a title";
    form.setAttribute("aria-busy", String(value));
  }

  function candidateItem(candidate) {
    const item = document.createElement("li");
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = candidate.title;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = candidate.score === null ? "–" : candidate.score.toFixed(2);
    item.append(text, " ", score);
    return item;
  }

  function showResult(data) {
    $("suggested-title").textContent = data.title;
    const candidates = data.candidates || [];
    $("candidates").replaceChildren(...candidates.map(candidateItem));
    $("candidates-box").open = candidates.length > 1;
    $("elapsed").textContent = Math.round(data.elapsed_ms);
    $("model-version").textContent = data.model_version;
    $("timing").hidden = false;
    const compare = currentTitle.value.trim();
    $("compare-title").textContent = compare;
    $("compare").hidden = !compare;
    $("feedback-body").value = body.value;
    $("feedback-suggested").value = data.title;
    $("feedback-model-version").value = data.model_version;
    $("feedback-url").value = data.issue ? data.issue.url : "";
    $("corrected-title").value = "";
    feedbackStatus.textContent = "";
    result.hidden = false;
  }

  async function summarize() {
    const link = url.value.trim();
    const payload = link ? { url: link, candidates: true } : { body: body.value, candidates: true };
    setBusy(true);
    form.dataset.state = "busy";
    clearError();
    let outcome = "error";
    try {
      const data = await call("POST", "/api/summarize", payload);
      if (data.issue) {
        body.value = data.issue.body;
        currentTitle.value = data.issue.title;
        url.value = data.issue.url;
      }
      showResult(data);
      outcome = "done";
    } catch (error) {
      result.hidden = true;
      $("suggested-title").textContent = ""; // no stale title next to the message
      showError(error.message);
    } finally {
      setBusy(false);
      form.dataset.state = outcome; // "done" or "error": tests and benchmarks wait for it
    }
  }

  async function loadSample() {
    clearError();
    try {
      const sample = await call("GET", "/api/sample");
      body.value = sample.body;
      currentTitle.value = sample.title || "";
      url.value = "";
      result.hidden = true;
      body.focus();
    } catch (error) {
      showError(error.message);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (event.submitter && event.submitter.id === "sample") {
      loadSample();
    } else if (!busy) {
      summarize();
    }
  });

  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (!busy) form.requestSubmit(submit);
    }
  });

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const scratch = document.createElement("textarea"); // plain http off localhost: the old way
    scratch.value = text;
    scratch.setAttribute("readonly", "");
    scratch.className = "offscreen";
    document.body.append(scratch);
    scratch.select();
    document.execCommand("copy");
    scratch.remove();
  }

  copy.hidden = false;
  copy.addEventListener("click", async () => {
    try {
      await copyText($("suggested-title").textContent);
      copy.textContent = "Copied!";
    } catch {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => { copy.textContent = "Copy"; }, 1500);
  });

  feedbackForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const verdict = event.submitter ? event.submitter.value : "good";
    const corrected = $("corrected-title").value.trim();
    const payload = {
      body: $("feedback-body").value,
      suggested: $("feedback-suggested").value,
      model_version: $("feedback-model-version").value,
      url: $("feedback-url").value,
      verdict,
      corrected,
    };
    feedbackStatus.textContent = "Saving…";
    try {
      await call("POST", "/api/feedback", payload);
      feedbackStatus.textContent = corrected
        ? "Thanks! Your title was saved; it will help train the next model."
        : `Thanks! Saved: the title is ${verdict === "good" ? "good" : "not good"}.`;
    } catch (error) {
      feedbackStatus.textContent = `Not saved: ${error.message}`;
    }
  });
})();
