// Sorting and filtering of the report's tables, inline so that the page works offline and
// needs no library. A click on a header sorts the rows by that column (numbers as numbers,
// so n = 50 comes before 5000; text with numeric collation, so "n=50, ..." before "n=500,
// ..."; missing values last), a second click reverses, a third restores the design's order.
// The box above a table keeps the rows that contain every word typed in it.
(function () {
  "use strict";
  var MISSING = "\u2013";
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function sortKey(row, column) {
    var text = row.cells[column] ? row.cells[column].textContent.trim() : "";
    // "0.0123 (0.0004)", "12 / 500" and "80.0%" sort by their leading number.
    var number = /^[-+]?(\d|\.\d)/.test(text) ? parseFloat(text) : NaN;
    return { text: text, number: number, missing: text === "" || text === MISSING };
  }

  function compare(a, b) {
    if (!isNaN(a.number) && !isNaN(b.number)) return a.number - b.number;
    if (!isNaN(a.number) !== !isNaN(b.number)) return isNaN(a.number) ? 1 : -1;
    return collator.compare(a.text, b.text);
  }

  function sortBy(table, header, column) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var state = { none: "ascending", ascending: "descending", descending: "none" }[
      header.getAttribute("aria-sort") || "none"];
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    if (state === "none") {
      rows.sort(function (a, b) { return a.designOrder - b.designOrder; });
    } else {
      header.setAttribute("aria-sort", state);
      var sign = state === "ascending" ? 1 : -1;
      rows.sort(function (a, b) {
        var x = sortKey(a, column), y = sortKey(b, column);
        if (x.missing !== y.missing) return x.missing ? 1 : -1;
        return sign * compare(x, y) || a.designOrder - b.designOrder;
      });
    }
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function addFilter(table) {
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var box = document.createElement("input");
    var count = document.createElement("span");
    box.type = "search";
    box.className = "table-filter";
    box.placeholder = "filter rows (words, all must match)";
    count.className = "note";
    box.addEventListener("input", function () {
      var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.textContent.toLowerCase();
        row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
        shown += row.hidden ? 0 : 1;
      });
      count.textContent = words.length ? " " + shown + " of " + rows.length + " rows" : "";
    });
    var wrap = table.closest(".table-wrap") || table;
    wrap.parentNode.insertBefore(box, wrap);
    wrap.parentNode.insertBefore(count, wrap);
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) { row.designOrder = i; });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, th, column); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, th, column); });
    });
    if (table.tBodies[0].rows.length > 5) addFilter(table);
  });
})();
