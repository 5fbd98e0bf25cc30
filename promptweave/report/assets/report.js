// promptweave report: sortable tables and a virtualised segment browser over an embedded JSON
// blob. Every model-written text reaches the page through textContent, never as markup.
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  // ---- sortable tables: <th class="sortable"> sorts by the cells' data-v (number or text) ----
  function sortTable(th, dir) {
    var table = th.closest("table"), body = table.tBodies[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var rows = Array.prototype.slice.call(body.rows);
    var asc = dir ? dir === "asc" : !th.classList.contains("sorted-asc");
    function key(r) {
      var c = r.cells[idx], v = c ? c.getAttribute("data-v") : null;
      if (v === null || v === "") return null;
      var f = parseFloat(v);
      return isNaN(f) ? v.toLowerCase() : f;
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === y) return 0;
      if (x === null) return 1;  // missing values last in both directions
      if (y === null) return -1;
      return (x < y ? -1 : 1) * (asc ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
    th.classList.add(asc ? "sorted-asc" : "sorted-desc");
  }
  document.querySelectorAll("th.sortable").forEach(function (th) {
    th.addEventListener("click", function () { sortTable(th); });
  });

  // ---- segment browser ----
  var blob = JSON.parse(document.getElementById("pw-data").textContent);
  var rows = blob.rows, items = blob.items, cols = blob.cols;
  rows.forEach(function (r, i) {  // each row's scores, from one array per column
    r.sc = {};
    cols.forEach(function (c) { var v = blob.sc[c][i]; if (v !== null && v !== undefined) r.sc[c] = v; });
  });
  var ROW_H = 28, list = document.getElementById("seg-list"), spacer = document.getElementById("seg-spacer");
  var detail = document.getElementById("seg-detail"), countEl = document.getElementById("seg-count");
  var fSys = document.getElementById("f-sys"), fFlag = document.getElementById("f-flag");
  var fCol = document.getElementById("f-col"), fMin = document.getElementById("f-min");
  var fMax = document.getElementById("f-max"), fText = document.getElementById("f-text");
  var shown = rows.map(function (_, i) { return i; }), selected = -1;

  function addOptions(select, values) {
    values.forEach(function (v) { var o = el("option", null, v); o.value = v; select.appendChild(o); });
  }
  var systems = [], flags = [], seenS = {}, seenF = {};
  rows.forEach(function (r) {
    if (!seenS[r.sys]) { seenS[r.sys] = 1; systems.push(r.sys); }
    r.fl.forEach(function (f) { if (!seenF[f]) { seenF[f] = 1; flags.push(f); } });
  });
  addOptions(fSys, systems); addOptions(fFlag, flags.sort()); addOptions(fCol, cols);
  var byItem = {};  // item -> row indices, for "every system's output" in the detail view
  rows.forEach(function (r, i) { (byItem[r.it] = byItem[r.it] || []).push(i); });

  // lower-cased searchable text per row, built on first search only
  var haystack = null;
  function textOf(r) {
    var it = items[r.it] || [], parts = [r.hyp, it[0], it[1], r.sys, r.err];
    r.steps.forEach(function (s) { parts.push(typeof s.v === "string" ? s.v : ""); parts.push(s.raw); });
    return parts.filter(Boolean).join("\n").toLowerCase();
  }

  function applyFilters() {
    var sys = fSys.value, flag = fFlag.value, col = fCol.value, q = fText.value.trim().toLowerCase();
    var lo = fMin.value === "" ? -Infinity : parseFloat(fMin.value);
    var hi = fMax.value === "" ? Infinity : parseFloat(fMax.value);
    if (q && !haystack) haystack = rows.map(textOf);
    shown = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (sys && r.sys !== sys) continue;
      if (flag && r.fl.indexOf(flag) < 0) continue;
      if (col) {
        var v = r.sc[col];
        if (v === undefined || v === null || v < lo || v > hi) continue;
      }
      if (q && haystack[i].indexOf(q) < 0) continue;
      shown.push(i);
    }
    countEl.textContent = shown.length + " of " + rows.length + " segments";
    spacer.style.height = (shown.length * ROW_H) + "px";
    list.scrollTop = 0;
    render();
  }

  function render() {
    var first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - 5);
    var last = Math.min(shown.length, first + Math.ceil(list.clientHeight / ROW_H) + 10);
    spacer.textContent = "";
    var col = fCol.value || cols[0];
    for (var k = first; k < last; k++) {
      var i = shown[k], r = rows[i], line = el("div", "seg-row" + (i === selected ? " sel" : ""));
      line.style.top = (k * ROW_H) + "px";
      line.setAttribute("data-i", i);
      line.appendChild(el("span", "muted", "#" + r.i + " "));
      line.appendChild(el("span", "sys", r.sys));
      if (col && r.sc[col] !== undefined) line.appendChild(el("span", "sc", col + " " + fmt(r.sc[col])));
      r.fl.forEach(function (f) { line.appendChild(el("span", "flag", f)); });
      line.appendChild(el("span", null, r.hyp === null ? "(no output)" : r.hyp));
      spacer.appendChild(line);
    }
  }
  function fmt(v) { return typeof v === "number" ? (Math.abs(v) < 10 ? v.toFixed(4) : v.toFixed(2)) : String(v); }

  // the translation with each error span marked (first occurrence, exact then case-insensitive)
  function highlighted(text, errs) {
    var pre = el("pre"), marks = [];
    (errs || []).forEach(function (e) {
      if (!e.span || !text) return;
      var at = text.indexOf(e.span);
      if (at < 0) at = text.toLowerCase().indexOf(e.span.toLowerCase());
      if (at >= 0) marks.push({ a: at, b: at + e.span.length, e: e });
    });
    marks.sort(function (x, y) { return x.a - y.a; });
    var pos = 0;
    marks.forEach(function (m) {
      if (m.a < pos) return;  // overlapping spans: keep the first
      pre.appendChild(document.createTextNode(text.slice(pos, m.a)));
      var mk = el("mark", String(m.e.sev || "").toLowerCase(), text.slice(m.a, m.b));
      mk.title = (m.e.sev || "") + " / " + (m.e.cat || "");
      pre.appendChild(mk);
      pos = m.b;
    });
    pre.appendChild(document.createTextNode(text === null ? "(no output)" : text.slice(pos)));
    return pre;
  }
  function field(parent, label, value) {
    var d = el("div", "field");
    d.appendChild(el("div", "k", label));
    if (value instanceof Node) d.appendChild(value); else d.appendChild(el("pre", null, value === null || value === undefined ? "—" : value));
    parent.appendChild(d);
  }

  function showDetail(i) {
    selected = i;
    var r = rows[i], it = items[r.it] || [];
    detail.textContent = "";
    detail.appendChild(el("h3", null, "#" + r.i + " · " + r.sys + " · item " + r.it));
    if (r.err) field(detail, "row error", r.err);
    field(detail, "source", it[0]);
    field(detail, "reference", it[1]);
    var allErrs = [];
    r.steps.forEach(function (s) { (s.e || []).forEach(function (e) { allErrs.push(e); }); });
    field(detail, "output (" + (blob.hyp || "hypothesis") + "), error spans marked", highlighted(r.hyp, allErrs));
    var sc = Object.keys(r.sc).map(function (k) { return k + " = " + fmt(r.sc[k]); }).join("   ");
    if (sc) field(detail, "scores", sc);
    var others = (byItem[r.it] || []).filter(function (j) { return j !== i; });
    if (others.length) {
      var t = el("table"), tb = el("tbody");
      others.forEach(function (j) {
        var o = rows[j], tr = el("tr"), c = cols[0];
        tr.appendChild(el("td", "sys", o.sys));
        tr.appendChild(el("td", "num", c && o.sc[c] !== undefined ? c + " " + fmt(o.sc[c]) : ""));
        tr.appendChild(el("td", null, o.hyp === null ? "(no output)" : o.hyp));
        tr.addEventListener("click", function () { showDetail(j); });
        tb.appendChild(tr);
      });
      t.appendChild(tb);
      field(detail, "the other systems on this segment", t);
    }
    r.steps.forEach(function (s) {
      var box = el("div", "field");
      var head = "step " + s.id + (s.ps ? " · parse " + s.ps : "") + (s.fl ? " · flags: " + s.fl.join(", ") : "");
      box.appendChild(el("div", "k", head));
      box.appendChild(el("pre", null, s.v === null || s.v === undefined ? "(no value)" : (typeof s.v === "number" ? fmt(s.v) : s.v)));
      if (s.err) box.appendChild(el("pre", null, "error: " + s.err));
      if (s.pe) box.appendChild(el("pre", null, "parse error: " + s.pe));
      if (s.rm) box.appendChild(el("pre", null, "removed by cleanup: " + s.rm.join(" | ")));
      if (s.e) {
        var t = el("table"), tb = el("tbody");
        s.e.forEach(function (e) {
          var tr = el("tr");
          tr.appendChild(el("td", null, e.sev)); tr.appendChild(el("td", null, e.cat)); tr.appendChild(el("td", null, e.span));
          tb.appendChild(tr);
        });
        t.appendChild(tb); box.appendChild(t);
      }
      if (s.raw) { box.appendChild(el("div", "k", "raw reply")); box.appendChild(el("pre", null, s.raw)); }
      if (s.raw2) { box.appendChild(el("div", "k", "raw reply (counts)")); box.appendChild(el("pre", null, s.raw2)); }
      (s.fr || []).forEach(function (x) { box.appendChild(el("div", "k", "unparsable reply")); box.appendChild(el("pre", null, x)); });
      detail.appendChild(box);
    });
    render();
  }

  list.addEventListener("scroll", function () { window.requestAnimationFrame(render); });
  spacer.addEventListener("click", function (ev) {
    var line = ev.target.closest(".seg-row");
    if (line) showDetail(parseInt(line.getAttribute("data-i"), 10));
  });
  [fSys, fFlag, fCol].forEach(function (s) { s.addEventListener("change", applyFilters); });
  [fMin, fMax, fText].forEach(function (s) { s.addEventListener("input", applyFilters); });
  applyFilters();

  // ---- self-test (open the page with #selftest): checks sorting, filtering and timing, and
  // writes the outcome into <pre id="selftest-result"> for a headless browser's --dump-dom ----
  function selfTest() {
    var out = { ok: true, checks: [], errors: errors, ms_page_ready: Math.round(performance.now()) };
    function check(name, cond, extra) { out.checks.push({ name: name, ok: !!cond, info: extra }); if (!cond) out.ok = false; }
    var t0 = performance.now();
    var table = document.getElementById("systems-table");
    check("systems table present", !cols.length || (table && table.tBodies[0].rows.length > 0));
    if (table) {
      var th = table.querySelector("th.sortable[data-col]");
      check("sortable column present", !!th);
      if (th) {
        var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
        function values() {
          return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[idx].getAttribute("data-v"); })
            .filter(function (v) { return v !== null && v !== ""; }).map(parseFloat);
        }
        sortTable(th, "asc");
        var a = values();
        check("sort ascending", a.every(function (v, i) { return i === 0 || a[i - 1] <= v; }), a);
        sortTable(th, "desc");
        var d = values();
        check("sort descending", d.every(function (v, i) { return i === 0 || d[i - 1] >= v; }), d);
      }
    }
    check("plots present", document.querySelectorAll("svg.chart").length > 0, document.querySelectorAll("svg.chart").length);
    var t1 = performance.now();
    fSys.value = systems[systems.length - 1] || ""; applyFilters();
    var expectSys = rows.filter(function (r) { return r.sys === fSys.value; }).length;
    check("filter by system", shown.length === expectSys && shown.every(function (i) { return rows[i].sys === fSys.value; }), shown.length);
    fSys.value = "";
    if (cols.length) {
      fCol.value = cols[0];
      var vals = rows.map(function (r) { return r.sc[cols[0]]; }).filter(function (v) { return typeof v === "number"; }).sort(function (x, y) { return x - y; });
      var mid = vals.length ? vals[Math.floor(vals.length / 2)] : 0;
      fMin.value = String(mid); applyFilters();
      check("filter by score range", shown.every(function (i) { return rows[i].sc[cols[0]] >= mid; }) &&
            shown.length === vals.filter(function (v) { return v >= mid; }).length, shown.length);
      fCol.value = ""; fMin.value = "";
    }
    if (flags.length) {
      fFlag.value = flags[0]; applyFilters();
      check("filter by flag", shown.length > 0 && shown.every(function (i) { return rows[i].fl.indexOf(flags[0]) >= 0; }), shown.length);
      fFlag.value = "";
    }
    var probe = rows.length ? (rows[rows.length - 1].hyp || "").slice(0, 12).toLowerCase() : "";
    fText.value = probe; applyFilters();
    check("search", !probe || shown.indexOf(rows.length - 1) >= 0, shown.length);
    fText.value = ""; applyFilters();
    check("virtualised list renders only visible rows", spacer.children.length <= 60 && (rows.length === 0 || spacer.children.length > 0), spacer.children.length);
    if (rows.length) {
      showDetail(rows.length - 1);
      check("detail view", detail.querySelectorAll("pre").length >= 2);
      var sameItem = rows.filter(function (r) { return r.it === rows[rows.length - 1].it; }).length;
      check("other systems of the segment", sameItem < 2 || detail.querySelectorAll("td.sys").length === sameItem - 1, sameItem);
      var marks = detail.querySelectorAll("mark").length;
      out.marks = marks;
    }
    list.scrollTop = list.scrollHeight; render();
    out.ms_filters = Math.round(performance.now() - t1);
    out.ms_total = Math.round(performance.now() - t0);
    out.segments = rows.length;
    check("no script errors", errors.length === 0, errors);
    var pre = document.getElementById("selftest-result");
    pre.textContent = JSON.stringify(out);
  }
  if (location.hash === "#selftest") selfTest();
})();
