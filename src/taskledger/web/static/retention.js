// The retention console: a form marked data-progress="<element id>" shows that element while
// its (synchronous) request runs, and cannot be sent twice. The pages work without it.
(function () {
  "use strict";

  function bind(root) {
    root.querySelectorAll("form[data-progress]").forEach(function (form) {
      if (form.dataset.progressBound) return;
      form.dataset.progressBound = "1";
      form.addEventListener("submit", function (event) {
        if (form.dataset.sent) {
          event.preventDefault();
          return;
        }
        form.dataset.sent = "1";
        form.setAttribute("aria-busy", "true");
        var note = document.getElementById(form.getAttribute("data-progress"));
        if (note) note.hidden = false;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { bind(document); });
  document.addEventListener("htmx:load", function (event) { bind(event.detail.elt); });
  // Coming back to a page from the history cache: the form may be sent again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-progress][data-sent]").forEach(function (form) {
      delete form.dataset.sent;
      form.removeAttribute("aria-busy");
      var note = document.getElementById(form.getAttribute("data-progress"));
      if (note) note.hidden = true;
    });
  });
})();
