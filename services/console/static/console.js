// hookmesh console: the one small helper of the server-rendered pages. Every form works
// without it; with it, confirmations ask first, the body editor shows only the chosen kind,
// and `data-refresh` parts of a page refresh in place (the delivery log with ?live=1).
(function () {
  "use strict";
  document.addEventListener("submit", function (e) {
    var b = e.submitter;
    if (b && b.dataset.confirm && !window.confirm(b.dataset.confirm)) e.preventDefault();
  });
  function modes() {
    var editor = document.getElementById("body-editor");
    if (!editor) return;
    var checked = editor.querySelector('input[name="body.mode"]:checked');
    var mode = checked ? checked.value : "";
    editor.querySelectorAll(".mode-part").forEach(function (p) {
      p.hidden = p.dataset.mode !== mode;
    });
  }
  document.addEventListener("change", function (e) {
    if (e.target.name === "body.mode") modes();
  });
  document.addEventListener("DOMContentLoaded", function () {
    modes();
    if (!/[?&]live=1/.test(location.search)) return;
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      setInterval(function () {
        if (document.hidden) return;
        fetch(el.dataset.refresh, { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) { if (html !== null) el.innerHTML = html; });
      }, 5000);
    });
  });
})();
