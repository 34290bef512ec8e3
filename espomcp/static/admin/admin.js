// espomcp admin console: progressive enhancement only; every page works without it.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    // Prevent double submission of changes (POST forms); GET filters stay re-submittable.
    var form = event.target;
    if ((form.getAttribute("method") || "get").toLowerCase() !== "post") { return; }
    if (form.dataset.submitted) { event.preventDefault(); return; }
    form.dataset.submitted = "1";
    form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
  });
  document.addEventListener("keydown", function (event) {
    // "/" focuses the first filter field, as in most consoles.
    var tag = (event.target.tagName || "").toLowerCase();
    if (event.key !== "/" || tag === "input" || tag === "textarea" || tag === "select") { return; }
    var field = document.querySelector("form.filters input, form.stacked input:not([type=hidden])");
    if (field) { event.preventDefault(); field.focus(); field.select(); }
  });
  document.addEventListener("change", function (event) {
    // Filters made of selects apply at once when the form has no free-text field filled.
    var el = event.target;
    if (el.tagName === "SELECT" && el.form && el.form.classList.contains("filters") && el.form.dataset.autosubmit !== undefined) {
      el.form.requestSubmit();
    }
  });
  document.querySelectorAll("code").forEach(function (el) {
    // Click a tuple string to select it for copying.
    el.addEventListener("click", function () {
      var range = document.createRange();
      range.selectNodeContents(el);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    });
  });
})();
