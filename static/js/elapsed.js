// Job clocks: the server renders each running job's elapsed time as data-elapsed (seconds at render);
// this ticks it every second between status polls, which answer 304 while nothing else changed.
// A 304 reaches HTMX as the browser's cached 200, so the same markup (same data-elapsed) is swapped in
// again every second: the clock is remembered per job and rendered value, not per element, or it would
// restart from that value on every poll (stuck at 0:00 through a long cold boot).
(function () {
  "use strict";
  const seen = new Map();  // job element id -> {elapsed: data-elapsed as rendered, at: when first shown}
  const unnamed = new WeakMap();  // clocks outside a job element: per element
  function format(total) {
    total = Math.max(0, Math.floor(total));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
  }
  function shownSince(clock, now) {
    const job = clock.closest(".job[id]");
    if (!job) {
      if (!unnamed.has(clock)) unnamed.set(clock, now);
      return unnamed.get(clock);
    }
    const last = seen.get(job.id);
    if (!last || last.elapsed !== clock.dataset.elapsed) seen.set(job.id, {elapsed: clock.dataset.elapsed, at: now});
    return seen.get(job.id).at;
  }
  function tick() {
    const now = performance.now();
    const live = new Set();
    for (const clock of document.querySelectorAll("[data-elapsed][data-live]")) {
      const seconds = Number(clock.dataset.elapsed) + (now - shownSince(clock, now)) / 1000;
      const text = format(seconds);
      if (clock.textContent !== text) clock.textContent = text;
      const job = clock.closest(".job[id]");
      if (job) live.add(job.id);
    }
    for (const id of seen.keys()) if (!live.has(id)) seen.delete(id);  // ended or gone: forget it
  }
  setInterval(tick, 1000);
  // Right after a poll's swap too, so the server's rendered time never shows for a moment.
  document.addEventListener("htmx:afterSettle", tick);
})();
