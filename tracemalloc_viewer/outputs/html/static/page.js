"use strict";
(function () {
  const page = window.memdietPage = {ready: false, openMs: null, allDrawn: false, allDrawnMs: null,
                                     scriptMs: performance.now(), errors: [], plots: {}};
  window.addEventListener("error", event => page.errors.push(String(event.message)));
  const DATA = JSON.parse(document.getElementById("memdiet-data").textContent);
  const LABELS = DATA.labels, RUNS = DATA.runs, PAIRS = DATA.pairs;
  const CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"]};
  const byId = id => document.getElementById(id);
  const count = value => Number(value).toLocaleString("en-US");

  function cell(row, content, className) {
    const td = document.createElement("td");
    td.textContent = content;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function phaseAt(run, x) {
    const phases = run.phases;
    if (!phases.length) return "";
    for (const [name, start, end] of phases) if (x >= start && x <= end) return name;
    if (x < phases[0][1]) return "before " + phases[0][0];
    for (let i = 1; i < phases.length; i++) {
      if (x < phases[i][1]) return "between " + phases[i - 1][0] + " and " + phases[i][0];
    }
    return "after " + phases[phases.length - 1][0];
  }

  function when(run, table) { return run.clock ? table.t.toFixed(3) + " s" : "sample " + table.i; }

  // --- curves --------------------------------------------------------------------------------------
  function plotCurve(run, index) {
    const figure = run.figure;
    for (const trace of figure.data) {
      trace.customdata = (trace.x || []).map(x => { const phase = phaseAt(run, x); return phase ? " \u00b7 " + phase : ""; });
    }
    figure.layout.template = DATA.template;
    return Plotly.newPlot(byId(run.div), figure.data, figure.layout, CONFIG).then(gd => {
      page.plots[run.div] = gd;
      gd.on("plotly_click", event => { if (event.points && event.points.length) showInstant(index, event.points[0].x); });
      gd.on("plotly_relayout", event => {
        let range = event["xaxis.range"];
        if (event["xaxis.range[0]"] !== undefined) range = [event["xaxis.range[0]"], event["xaxis.range[1]"]];
        if (range) showWindow(index, Number(range[0]), Number(range[1]));
        else if (event["xaxis.autorange"]) showTable(index, run.peak_table, "the peak (the whole capture shown)");
      });
    });
  }

  // --- sites table -----------------------------------------------------------------------------------
  const sites = {run: 0, table: 0, why: "the peak", key: "size", descending: true};

  function showInstant(runIndex, x) {
    const run = RUNS[runIndex];
    let best = 0;
    run.tables.forEach((table, i) => { if (Math.abs(table.t - x) < Math.abs(run.tables[best].t - x)) best = i; });
    showTable(runIndex, best, "the nearest sample with sites to " + (run.clock ? x.toFixed(3) + " s" : "sample " + Math.round(x)));
  }

  function showWindow(runIndex, start, end) {
    const run = RUNS[runIndex];
    const inside = run.tables.map((table, i) => i).filter(i => run.tables[i].t >= start && run.tables[i].t <= end);
    const span = (run.clock ? start.toFixed(3) + " s to " + end.toFixed(3) + " s" : "samples " + Math.ceil(start) + " to " + Math.floor(end));
    if (inside.length) {
      const best = inside.reduce((a, b) => run.tables[b].total > run.tables[a].total ? b : a);
      showTable(runIndex, best, "window " + span + ": its largest of " + inside.length + " samples with sites");
    } else {
      showInstant(runIndex, (start + end) / 2);
      sites.why = "window " + span + " holds no sample with sites: " + sites.why;
      renderSites();
    }
  }

  function showTable(runIndex, tableIndex, why) {
    if (sites.run !== runIndex || !byId("sites-sample").options.length) fillSamples(runIndex);
    Object.assign(sites, {run: runIndex, table: tableIndex, why: why});
    byId("sites-run").value = String(runIndex);
    byId("sites-sample").value = String(tableIndex);
    renderSites();
  }

  function fillSamples(runIndex) {
    const select = byId("sites-sample"), run = RUNS[runIndex], names = {};
    select.innerHTML = "";
    for (const moment of run.moments) names[moment.table] = (names[moment.table] ? names[moment.table] + "; " : "") + moment.label;
    run.tables.forEach((table, i) => select.add(new Option(when(run, table) + (names[i] ? "  (" + names[i] + ")" : ""), String(i))));
  }

  function renderSites() {
    const run = RUNS[sites.run], table = run.tables[sites.table];
    byId("sites-caption").textContent = run.name + " at " + when(run, table) + ": " + table.total_text + " in " +
      count(table.blocks) + " blocks, " + count(table.sites) + " sites by line (" + sites.why + ")";
    const rows = table.rows.map((row, i) => ({rank: i + 1, site: LABELS[row[0]], size: row[1], count: row[2],
                                              sizeText: row[3], share: row[1], shareText: row[4]}));
    const key = sites.key, sign = sites.descending ? -1 : 1;
    rows.sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : a.rank - b.rank) * sign);
    const body = byId("sites-table").tBodies[0];
    body.innerHTML = "";
    for (const row of rows) {
      const tr = body.insertRow();
      tr.dataset.site = row.site;
      tr.dataset.size = row.size;
      tr.dataset.count = row.count;
      cell(tr, row.rank, "num");
      cell(tr, row.site, "site");
      cell(tr, row.sizeText, "num").title = count(row.size) + " B";
      cell(tr, count(row.count), "num");
      cell(tr, row.shareText, "num");
    }
    const foot = byId("sites-table").tFoot;
    foot.innerHTML = "";
    if (table.rest) {
      const tr = foot.insertRow();
      tr.className = "rest";
      cell(tr, "", "num");
      cell(tr, "(" + count(table.rest[0]) + " more sites)", "site");
      cell(tr, table.rest[3], "num").title = count(table.rest[1]) + " B";
      cell(tr, count(table.rest[2]), "num");
      cell(tr, table.rest[4], "num");
    }
    for (const th of byId("sites-table").tHead.rows[0].cells) {
      th.setAttribute("aria-sort", th.dataset.key === key ? (sites.descending ? "descending" : "ascending") : "none");
    }
  }

  function setUpSites() {
    const select = byId("sites-run");
    if (!RUNS.length) { byId("sites-caption").textContent = "No capture on this page."; return; }
    RUNS.forEach((run, i) => select.add(new Option(run.name, String(i))));
    select.addEventListener("change", () => { fillSamples(Number(select.value)); showTable(Number(select.value), RUNS[Number(select.value)].peak_table, "the peak"); });
    byId("sites-sample").addEventListener("change", () => showTable(sites.run, Number(byId("sites-sample").value), "chosen"));
    for (const th of byId("sites-table").tHead.rows[0].cells) {
      th.addEventListener("click", () => {
        if (sites.key === th.dataset.key) sites.descending = !sites.descending;
        else { sites.key = th.dataset.key; sites.descending = th.dataset.key !== "site" && th.dataset.key !== "rank"; }
        renderSites();
      });
    }
    fillSamples(0);
    showTable(0, RUNS[0].peak_table, "the peak");
  }

  // --- compare ----------------------------------------------------------------------------------------
  const key = (a, m, b, n) => a + "." + m + ">" + b + "." + n;
  const comparable = RUNS.map((run, i) => i).filter(i => RUNS[i].moments.length);

  function choice(side) { return [Number(byId("cmp-" + side + "-run").value), Number(byId("cmp-" + side + "-moment").value)]; }

  function fillMoments(side, runIndex, wanted) {
    const select = byId("cmp-" + side + "-moment");
    select.innerHTML = "";
    const [a, m] = side === "b" ? choice("a") : [null, null];
    let first = null;
    RUNS[runIndex].moments.forEach((moment, n) => {
      const option = new Option(moment.label, String(n));
      if (side === "b" && !PAIRS[key(a, m, runIndex, n)]) { option.disabled = true; option.text += " (not compared on this page)"; }
      else if (first === null) first = n;
      select.add(option);
    });
    const keep = select.options[wanted] && !select.options[wanted].disabled ? wanted : first;
    if (keep !== null) select.value = String(keep);
  }

  function refreshB(wantedRun, wantedMoment) {
    const [a, m] = choice("a");
    const runs = byId("cmp-b-run");
    let firstRun = null;
    for (const option of runs.options) {
      const b = Number(option.value);
      option.disabled = !RUNS[b].moments.some((moment, n) => PAIRS[key(a, m, b, n)]);
      if (!option.disabled && firstRun === null) firstRun = b;
    }
    const wantedOption = runs.options[comparable.indexOf(wantedRun)];
    const run = wantedOption && !wantedOption.disabled ? wantedRun : firstRun;
    if (run === null) return;
    runs.value = String(run);
    fillMoments("b", run, wantedMoment);
  }

  function renderCompare() {
    const [a, m] = choice("a"), [b, n] = choice("b");
    const pair = PAIRS[key(a, m, b, n)];
    const body = byId("cmp-table").tBodies[0], foot = byId("cmp-table").tFoot, notes = byId("cmp-notes");
    body.innerHTML = ""; foot.innerHTML = ""; notes.innerHTML = "";
    const nameA = RUNS[a].name + ", " + RUNS[a].moments[m].label, nameB = RUNS[b].name + ", " + RUNS[b].moments[n].label;
    if (!pair) {
      byId("cmp-caption").textContent = nameA + " and " + nameB + " are not compared on this page (see What this page keeps).";
      return;
    }
    byId("cmp-caption").textContent = nameA + "  \u2192  " + nameB + ": total " + pair.totals_text + ", " + count(pair.sites) + " sites by line";
    for (const note of pair.notes) { const li = document.createElement("li"); li.textContent = note; notes.appendChild(li); }
    pair.rows.forEach((row, i) => {
      const tr = body.insertRow();
      Object.assign(tr.dataset, {site: LABELS[row[0]], sizeDiff: row[1], size: row[2], countDiff: row[3], count: row[4]});
      cell(tr, i + 1, "num");
      cell(tr, row[5], "num " + (row[1] > 0 ? "grow" : row[1] < 0 ? "shrink" : "")).title = (row[1] > 0 ? "+" : "") + count(row[1]) + " B";
      cell(tr, row[6], "num").title = count(row[2]) + " B";
      cell(tr, (row[3] > 0 ? "+" : "") + count(row[3]), "num");
      cell(tr, count(row[4]), "num");
      cell(tr, LABELS[row[0]], "site");
    });
    if (pair.rest) {
      const tr = foot.insertRow();
      tr.className = "rest";
      cell(tr, "", "num");
      cell(tr, pair.rest[3], "num").title = count(pair.rest[1]) + " B";
      cell(tr, "", "num");
      cell(tr, (pair.rest[2] > 0 ? "+" : "") + count(pair.rest[2]), "num");
      cell(tr, "", "num");
      cell(tr, "(" + count(pair.rest[0]) + " more sites)", "site");
    }
  }

  function setUpCompare() {
    if (!comparable.length || !Object.keys(PAIRS).length) {
      byId("cmp-caption").textContent = comparable.length ? "Only one moment with sites on this page: nothing to compare."
                                                          : "No capture on this page has allocation sites to compare.";
      return;
    }
    for (const side of ["a", "b"]) {
      const select = byId("cmp-" + side + "-run");
      for (const i of comparable) select.add(new Option(RUNS[i].name, String(i)));
    }
    const start = DATA.compare_default || [comparable[0], 0, comparable[0], 0];
    byId("cmp-a-run").value = String(start[0]);
    fillMoments("a", start[0], start[1]);
    refreshB(start[2], start[3]);
    byId("cmp-a-run").addEventListener("change", () => { const [b, n] = choice("b"); fillMoments("a", choice("a")[0]); refreshB(b, n); renderCompare(); });
    byId("cmp-a-moment").addEventListener("change", () => { const [b, n] = choice("b"); refreshB(b, n); renderCompare(); });
    byId("cmp-b-run").addEventListener("change", () => { fillMoments("b", choice("b")[0]); renderCompare(); });
    byId("cmp-b-moment").addEventListener("change", renderCompare);
    byId("cmp-swap").addEventListener("click", () => {
      const [a, m] = choice("a"), [b, n] = choice("b");
      byId("cmp-a-run").value = String(b);
      fillMoments("a", b, n);
      refreshB(a, m);
      renderCompare();
    });
    renderCompare();
  }

  // --- start: the figures on screen first, then the others one by one (a scrolled-to one jumps the queue) ---
  const figures = RUNS.map((run, index) => ({div: run.div, draw: () => plotCurve(run, index)}));
  for (const section of DATA.sections) {
    if (!section.figure) continue;
    figures.push({div: section.div, draw: () => {
      section.figure.layout.template = DATA.template;
      return Plotly.newPlot(byId(section.div), section.figure.data, section.figure.layout, CONFIG)
        .then(gd => { page.plots[section.div] = gd; });
    }});
  }
  const pending = new Map(figures.map(figure => [figure.div, figure]));
  function draw(figure) {
    if (!pending.delete(figure.div)) return Promise.resolve();
    return Promise.resolve().then(figure.draw).catch(error => { page.errors.push(String(error)); console.error(error); });
  }
  const onScreen = figures.filter(figure => byId(figure.div).getBoundingClientRect().top < window.innerHeight);
  const watcher = "IntersectionObserver" in window ? new IntersectionObserver(entries => {
    for (const entry of entries) if (entry.isIntersecting && pending.has(entry.target.id)) draw(pending.get(entry.target.id));
  }, {rootMargin: "300px"}) : null;
  setUpSites();
  setUpCompare();
  Promise.all(onScreen.map(draw)).then(() => {
    page.openMs = performance.now();
    page.ready = true;
    document.body.dataset.ready = "1";
    if (watcher) for (const figure of pending.values()) watcher.observe(byId(figure.div));
    const next = () => {
      const figure = pending.values().next().value;
      if (!figure) {
        page.allDrawnMs = performance.now();
        page.allDrawn = true;
        if (watcher) watcher.disconnect();
        return;
      }
      draw(figure).then(() => setTimeout(next, 0));
    };
    setTimeout(next, 0);
  });
})();
