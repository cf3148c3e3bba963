// Live preview for the document editor: posts the text to the preview endpoint (which
// validates and renders it exactly like a save would) and lists problems at their lines.
(function () {
  "use strict";
  const form = document.getElementById("docs-editor");
  if (!form) return;
  const body = form.querySelector("textarea[name=body]");
  const title = form.querySelector("input[name=title]");
  const pathInput = form.querySelector("input[name=path]");
  const preview = document.getElementById("docs-preview");
  const problems = document.getElementById("docs-problems");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  let timer = null;
  let sequence = 0;

  function goToLine(line) {
    const lines = body.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    body.focus();
    body.setSelectionRange(start, start + (lines[line - 1] || "").length);
    const lineHeight = body.scrollHeight / Math.max(lines.length, 1);
    body.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }

  function showProblems(errors, warnings) {
    problems.replaceChildren();
    const all = errors.concat(warnings);
    if (!all.length) return;
    const heading = document.createElement("h2");
    heading.textContent = errors.length ? "Problems (saving is refused)" : "Warnings";
    const list = document.createElement("ul");
    for (const p of all) {
      const item = document.createElement("li");
      item.className = p.level || "error";
      if (p.line) {
        const link = document.createElement("a");
        link.href = "#";
        link.dataset.line = p.line;
        link.textContent = "line " + p.line;
        item.append(link, ": ");
      }
      item.append((p.loc ? p.loc + ": " : "") + p.msg);
      list.append(item);
    }
    problems.append(heading, list);
  }

  async function refresh() {
    const mine = ++sequence;
    const response = await fetch(form.dataset.previewUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({
        body: body.value,
        title: title.value || null,
        path: (pathInput && pathInput.value) || "preview",
      }),
    });
    if (mine !== sequence) return; // a newer request is on its way
    if (!response.ok) {
      preview.textContent = "Preview unavailable (" + response.status + ").";
      return;
    }
    const data = await response.json();
    preview.innerHTML = data.html; // sanitised by the server with an allow-list
    showProblems(data.errors, data.warnings);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 350);
  }

  problems.addEventListener("click", function (event) {
    const line = event.target.dataset && event.target.dataset.line;
    if (line) {
      event.preventDefault();
      goToLine(parseInt(line, 10));
    }
  });
  body.addEventListener("input", schedule);
  title.addEventListener("input", schedule);
  if (pathInput) pathInput.addEventListener("input", schedule);
  refresh();
})();
