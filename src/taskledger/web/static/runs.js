// The Runs page: the "N new runs" indicator asks about runs newer than the table's first row,
// and the filter form leaves empty fields out of the URL it pushes.
(function () {
  "use strict";

  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    if (!elt || !elt.hasAttribute) return;
    if (elt.hasAttribute("data-runs-after")) {
      var top = document.querySelector("#runs-rows tr[data-run]");
      if (top) event.detail.parameters.after = top.getAttribute("data-run");
    }
    if (elt.hasAttribute("data-runs-filters")) {
      var params = event.detail.parameters;
      // htmx 2 passes FormData; drop the empty fields so the pushed URL stays short.
      if (params && typeof params.forEach === "function" && typeof params.delete === "function") {
        var empty = [];
        params.forEach(function (value, key) { if (value === "") empty.push(key); });
        empty.forEach(function (key) {
          var kept = params.getAll(key).filter(function (value) { return value !== ""; });
          params.delete(key);
          kept.forEach(function (value) { params.append(key, value); });
        });
      }
    }
  });

  // Rows put into an empty table: show the table, drop the empty state.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "runs-rows") {
      var table = document.getElementById("runs-table");
      if (table) table.hidden = false;
      document.querySelectorAll(".runs-empty").forEach(function (node) { node.remove(); });
    }
  });
})();
