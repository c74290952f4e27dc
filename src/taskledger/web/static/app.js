// taskledger's own script for every page: no inline script anywhere (the CSP forbids it).
// Pages work without it; it adds the CSRF header to htmx requests and small conveniences.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Every htmx request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // Focus the message area when an error lands in it, so keyboard users hear it.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "messages") {
      event.detail.target.setAttribute("tabindex", "-1");
      event.detail.target.focus();
    }
  });

  function init(root) {
    // Selects that submit their form when changed (the project switcher).
    root.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      select.addEventListener("change", function () {
        if (select.form.requestSubmit) select.form.requestSubmit();
        else select.form.submit();
      });
    });
    // Buttons that copy the text of another element (a new API key's secret).
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (!source) return;
        var text = source.value !== undefined ? source.value : source.textContent;
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done);
        } else if (source.select) {
          source.select();
          document.execCommand("copy");
          done();
        }
      });
    });
    // Buttons enabled only once a field holds an exact text (a typed confirmation).
    root.querySelectorAll("[data-confirm-input]").forEach(function (input) {
      if (input.dataset.bound) return;
      input.dataset.bound = "1";
      var button = document.getElementById(input.getAttribute("data-confirm-button"));
      var expected = input.getAttribute("data-confirm-input");
      var update = function () { if (button) button.disabled = input.value !== expected; };
      input.addEventListener("input", update);
      update();
    });
    root.querySelectorAll(".js-hidden").forEach(function (element) { element.hidden = true; });
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.detail.elt); });
})();
