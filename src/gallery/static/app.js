// The gallery page: plain DOM, no framework, no build step. Its state lives in the URL
// (tab, user, status, since, until, and id for an open detail), so a view can be shared.
// Every text that comes from the data is set with textContent or setAttribute, never
// parsed as HTML: a prompt such as <img src=x onerror=alert(1)> stays text.

const FILTERS = ["user", "status", "since", "until"];
const TABS = ["all", "generated", "edited", "upscaled", "videos"];
const CONTEXT_LABELS = { generated: "Generated", edited: "Edited", upscaled: "Upscaled", videos: "Videos" };

const $ = (selector) => document.querySelector(selector);
const grid = $("#grid");
const more = $("#more");
const summary = $("#summary");
const errorBanner = $("#error");
const form = $("#filters");
const dialog = $("#detail");
const detailBody = $("#detail-body");
const detailTitle = $("#detail-title");

/** What is on screen: the query it was loaded for, the next cursor, the counts and their filters. */
const view = { listQuery: null, next: null, shown: 0, counts: null, countsQuery: null, loading: 0 };
let openedFrom = null;

// --- state in the URL -----------------------------------------------------------------

function readState() {
  const params = new URLSearchParams(location.search);
  const tab = TABS.includes(params.get("tab")) ? params.get("tab") : "all";
  const filters = {};
  for (const name of FILTERS) {
    const value = params.get(name);
    if (value) filters[name] = value;
  }
  return { tab, filters, id: params.get("id") || null };
}

function urlFor(state) {
  const params = new URLSearchParams();
  if (state.tab !== "all") params.set("tab", state.tab);
  for (const name of FILTERS) if (state.filters[name]) params.set(name, state.filters[name]);
  if (state.id) params.set("id", state.id);
  const search = params.toString();
  return search ? `?${search}` : location.pathname;
}

function filterQuery(filters) {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (filters[name]) params.set(name, filters[name]);
  return params;
}

function navigate(state, { replace = false } = {}) {
  history[replace ? "replaceState" : "pushState"](null, "", urlFor(state));
  return render();
}

// --- loading --------------------------------------------------------------------------

async function getJson(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `The server answered ${response.status}.`);
  return body;
}

function showError(error) {
  errorBanner.hidden = error === null;
  errorBanner.textContent = error === null ? "" : `Could not load: ${error.message}`;
}

async function render() {
  const state = readState();
  syncControls(state);
  const filters = filterQuery(state.filters);
  const listQuery = new URLSearchParams(filters);
  if (state.tab !== "all") listQuery.set("tab", state.tab);
  const loads = [];
  if (view.listQuery !== listQuery.toString()) loads.push(loadPage(listQuery, { append: false }));
  if (view.countsQuery !== filters.toString()) loads.push(loadCounts(filters));
  await Promise.all(loads);
  if (state.id) await openDetail(state.id);
  else if (dialog.open) dialog.close();
}

async function loadPage(listQuery, { append }) {
  const token = ++view.loading;
  grid.setAttribute("aria-busy", "true");
  more.disabled = true;
  try {
    const query = new URLSearchParams(listQuery);
    if (append && view.next) query.set("after", view.next);
    const page = await getJson(`/api/generations?${query}`);
    if (token !== view.loading) return; // a newer load replaced this one
    showError(null);
    if (!append) {
      grid.replaceChildren();
      view.shown = 0;
    }
    const cards = page.items.map(card);
    grid.append(...cards);
    view.listQuery = listQuery.toString();
    view.next = page.next;
    view.shown += page.items.length;
    more.hidden = page.next === null;
    updateSummary();
    // Keyboard users continue from the first card that just arrived.
    if (append && cards.length > 0) cards[0].querySelector("button.details").focus();
  } catch (error) {
    if (token === view.loading) showError(error);
  } finally {
    if (token === view.loading) {
      grid.removeAttribute("aria-busy");
      more.disabled = false;
    }
  }
}

async function loadCounts(filters) {
  const query = filters.toString();
  try {
    const counts = await getJson(`/api/counts?${query}`);
    view.counts = counts;
    view.countsQuery = query;
    for (const link of document.querySelectorAll(".tabs a")) {
      link.querySelector(".count").textContent = counts[link.dataset.tab].toLocaleString("en-US");
    }
    updateSummary();
  } catch (error) {
    showError(error);
  }
}

function updateSummary() {
  const { tab } = readState();
  const total = view.counts?.[tab];
  const of = total === undefined ? "" : ` of ${total.toLocaleString("en-US")}`;
  // Counts over many rows are kept for a few seconds by the server: say when they are older.
  const age = view.counts?.ageSeconds ?? 0;
  const asOf = age >= 2 ? `; counts as of ${new Date(view.counts.asOf).toLocaleTimeString("en-GB")}` : "";
  summary.textContent =
    view.shown === 0 && view.listQuery !== null
      ? "No generations match."
      : `Showing ${view.shown.toLocaleString("en-US")}${of}, newest first${asOf}.`;
}

// --- controls -------------------------------------------------------------------------

function syncControls(state) {
  for (const link of document.querySelectorAll(".tabs a")) {
    link.href = urlFor({ ...state, tab: link.dataset.tab, id: null });
    if (link.dataset.tab === state.tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  form.elements.tab.value = state.tab;
  for (const name of FILTERS) form.elements[name].value = state.filters[name] ?? "";
}

document.querySelector(".tabs").addEventListener("click", (event) => {
  const link = event.target.closest("a[data-tab]");
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  void navigate({ ...readState(), tab: link.dataset.tab, id: null });
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const filters = {};
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) filters[name] = value;
  }
  void navigate({ tab: readState().tab, filters, id: null });
});

$("#f-clear").addEventListener("click", () => void navigate({ tab: readState().tab, filters: {}, id: null }));

more.addEventListener("click", () => {
  const query = new URLSearchParams(view.listQuery ?? "");
  void loadPage(query, { append: true });
});

window.addEventListener("popstate", () => void render());

// --- the grid -------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

function operationLabel(item) {
  const label = CONTEXT_LABELS[item.operation.storageContext] ?? item.operation.storageContext;
  return item.operation.detectedBy === "prompt-prefix" ? `${label} · from prompt` : label;
}

/** The badges that say what state a generation is in; problems are never left out. */
function badges(item) {
  const list = el("ul", { class: "badges", "aria-label": "State" });
  const add = (text, kind) => list.append(el("li", { class: `badge ${kind}`, text }));
  add(item.status, `status-${item.status}`);
  add(operationLabel(item), item.operation.detectedBy === "prompt-prefix" ? "operation from-prompt" : "operation");
  if (item.flags.expired) add("output expired", "problem");
  if (item.flags.missingKeys) add("missing in storage", "problem");
  if (item.flags.noThumbnail) add("no thumbnail", "warning");
  return list;
}

function placeholderText(item) {
  if (item.flags.failed) return `${item.status[0].toUpperCase()}${item.status.slice(1)}`;
  if (item.flags.processing) return "Still processing";
  if (item.flags.expired) return "Output expired";
  if (item.flags.missingKeys) return "Missing in storage";
  return "No output";
}

function mediaFor(item, object, { detail = false } = {}) {
  const description = `${item.prompt.slice(0, 120)}`;
  if (object.media === "video") {
    const poster = item.objects.find((o) => o.kind === "thumbnail" && o.media === "image" && !o.missing);
    return el("video", {
      src: object.url,
      controls: true,
      muted: true,
      playsinline: true,
      preload: "metadata",
      poster: poster?.url,
      "aria-label": `Video: ${description}`,
    });
  }
  return el("img", {
    src: object.url,
    alt: detail ? `${object.kind === "thumbnail" ? "Thumbnail" : "Output"}: ${description}` : description,
    loading: detail ? "eager" : "lazy",
    decoding: "async",
  });
}

function card(item) {
  const titleId = `t-${item.id}`;
  const cover = item.cover;
  // A video is shown as a video even when it has a thumbnail: the grid plays it.
  const video = item.objects.find((o) => o.kind !== "thumbnail" && o.media === "video" && !o.missing);
  const media = el(
    "div",
    { class: "media" },
    video
      ? mediaFor(item, video)
      : cover
        ? mediaFor(item, cover)
        : el("p", { class: `placeholder ${item.flags.failed ? "failed" : ""}`, text: placeholderText(item) }),
  );
  const details = el("button", { type: "button", class: "details", "aria-describedby": titleId, text: "Details" });
  details.addEventListener("click", () => {
    openedFrom = details;
    void navigate({ ...readState(), id: item.id });
  });
  return el(
    "li",
    { class: "card", "data-id": item.id },
    el(
      "article",
      { "aria-labelledby": titleId },
      media,
      el(
        "div",
        { class: "body" },
        badges(item),
        el("h3", { id: titleId, class: "prompt", text: item.prompt || "(no prompt)" }),
        el("p", { class: "meta", text: `${item.userId} · ${formatTime(item.createdAt)}` }),
        item.error ? el("p", { class: "row-error", text: item.error }) : null,
        details,
      ),
    ),
  );
}

function formatTime(iso) {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC` : "—";
}

function formatSize(bytes) {
  if (typeof bytes !== "number") return "size unknown";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1024;
    unit += 1;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(1)} ${units[unit]} (${bytes.toLocaleString("en-US")} bytes)`;
}

// --- the detail view ------------------------------------------------------------------

async function openDetail(id) {
  let item;
  try {
    item = await getJson(`/api/generations/${encodeURIComponent(id)}`);
  } catch (error) {
    showError(error);
    return;
  }
  if (readState().id !== id) return; // closed or replaced meanwhile
  detailTitle.textContent = `Generation ${item.id}`;
  detailBody.replaceChildren(detailContent(item));
  if (!dialog.open) dialog.showModal();
}

function detailContent(item) {
  const fields = el("dl", { class: "fields" });
  const field = (name, value, className) =>
    fields.append(el("dt", { text: name }), el("dd", { class: className, text: value ?? "—" }));
  field("Prompt", item.prompt, "prompt-full");
  field(
    "Operation",
    `${item.operation.operationType} → ${item.operation.storageContext}/ · ${
      item.operation.detectedBy === "prompt-prefix"
        ? "read from the prompt prefix (the row has no operationType)"
        : "from the operationType column"
    }`,
  );
  field("Status", item.status, `status-text status-${item.status}`);
  if (item.error) field("Error", item.error, "row-error");
  field("Replicate id", item.replicateId);
  field("Model", item.model);
  field("Version", item.version);
  field("User", item.userId);
  field("userId source", item.userIdSource ?? "not recorded");
  field("Created", formatTime(item.createdAt));
  field("Updated", formatTime(item.updatedAt));
  field("Completed", item.completedAt ? formatTime(item.completedAt) : "not completed");
  field("Storage", item.storageProvider ? `${item.storageProvider} · ${item.storageBucket ?? ""}` : "nothing stored");

  const previews = el("div", { class: "previews" });
  for (const object of item.objects) {
    if (!object.missing && object.media !== "other") previews.append(mediaFor(item, object, { detail: true }));
  }

  const keys = el("table", { class: "keys" });
  keys.append(
    el("caption", { text: `Stored objects (${item.objects.length})` }),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col", text: "Key" }),
        el("th", { scope: "col", text: "Kind" }),
        el("th", { scope: "col", text: "Size" }),
        el("th", { scope: "col", text: "In storage" }),
      ),
    ),
  );
  const rows = el("tbody");
  for (const object of item.objects) {
    rows.append(
      el(
        "tr",
        { class: object.missing ? "missing" : null },
        el("td", { class: "key", text: object.key }),
        el("td", { text: object.kind }),
        el("td", { text: formatSize(object.size) }),
        el("td", { text: object.missing ? "missing" : "present" }),
      ),
    );
  }
  if (item.objects.length === 0) rows.append(el("tr", {}, el("td", { colspan: 4, text: "No stored objects." })));
  keys.append(rows);

  const problems = [...item.expiredOutputs, ...item.failedOutputs];
  const problemList =
    problems.length > 0
      ? el(
          "section",
          { class: "problems", "aria-label": "Outputs not stored" },
          el("h3", { text: "Outputs not stored" }),
          el(
            "ul",
            {},
            ...problems.map((p) => el("li", { text: `Output ${p.index ?? "?"}: ${p.problem}. ${p.message}` })),
          ),
        )
      : null;

  const metadata = el(
    "section",
    { class: "metadata", "aria-label": "Metadata" },
    el("h3", { text: "Metadata" }),
    el("pre", { tabindex: 0, text: JSON.stringify(item.metadata, null, 2) }),
  );
  const fragment = document.createDocumentFragment();
  fragment.append(badges(item), previews, fields, keys);
  if (problemList) fragment.append(problemList);
  fragment.append(metadata);
  return fragment;
}

$("#detail-close").addEventListener("click", () => dialog.close());

dialog.addEventListener("close", () => {
  const state = readState();
  if (state.id) void navigate({ ...state, id: null }, { replace: true });
  detailBody.replaceChildren();
  // Back to where the reader was, when the detail was opened from a card.
  if (openedFrom?.isConnected) openedFrom.focus();
  openedFrom = null;
});

void render();
