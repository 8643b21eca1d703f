// batchd dashboard: live progress over server-sent events, confirmations, the CSRF
// header on htmx requests, and a keyboard shortcut ("/" searches). No inline scripts:
// the pages' Content-Security-Policy allows none.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf;
  });

  // Once the page is being left (a link followed, an action's form posted), nothing may
  // overtake that navigation: a filter's late htmx swap (its history push) or the reload
  // at a batch's end would cancel it. Requests in flight are aborted, none are sent.
  var leaving = false;
  function leave() {
    leaving = true;
    document.querySelectorAll("[hx-get], [hx-post]").forEach(function (el) {
      if (window.htmx) window.htmx.trigger(el, "htmx:abort");
    });
  }
  window.addEventListener("pageshow", function () { leaving = false; });
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (leaving) e.preventDefault();
  });

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var msg = form.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); return; }
    if (!e.defaultPrevented && !form.hasAttribute("hx-get") && !form.hasAttribute("hx-post")) leave();
  });

  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a[href]");
    if (!a || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    if (a.hasAttribute("download") || a.hasAttribute("hx-get") || (a.target && a.target !== "_self")) return;
    if (a.getAttribute("href").charAt(0) === "#") return;
    leave();
  });

  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target.tagName;
    if (t === "INPUT" || t === "TEXTAREA" || t === "SELECT") return;
    var box = document.querySelector("input[type=search]");
    if (box) { e.preventDefault(); box.focus(); }
  });

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, obj);
  }

  function show(root, b) {
    root.querySelectorAll("[data-field]").forEach(function (el) {
      var v = get(b, el.getAttribute("data-field"));
      if (v === undefined || v === null) return;
      if (el.tagName === "PROGRESS" || el.tagName === "METER") {
        el.value = v;
      } else if (el.hasAttribute("data-badge")) {
        el.textContent = v; el.className = "badge " + v;
      } else {
        el.textContent = v;
      }
    });
    var max = root.querySelector("progress[data-max]");
    if (max) max.max = Math.max(1, get(b, max.getAttribute("data-max")) || 1);
  }

  function follow(root) {
    if (!window.EventSource) return;
    var src = new EventSource(root.getAttribute("data-sse"));
    src.addEventListener("progress", function (ev) { show(root, JSON.parse(ev.data)); });
    src.addEventListener("done", function (ev) {
      show(root, JSON.parse(ev.data));
      src.close();
      // The final state changes what the page offers (actions, downloads): load it anew.
      window.setTimeout(function () { if (!leaving) window.location.reload(); }, 300);
    });
    src.onerror = function () { if (src.readyState === 2) src.close(); };
  }

  document.querySelectorAll("[data-sse]").forEach(follow);
})();
