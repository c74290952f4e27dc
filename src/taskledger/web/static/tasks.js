// The Tasks page: a refused start (409) carries the task's row with its blockers shown
// inline; htmx treats 4xx as errors, so let that one answer swap in like a success.
(function () {
  "use strict";
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status === 409 && xhr.getResponseHeader("X-Task-Blocked") === "1") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
