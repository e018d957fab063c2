// Job clocks: the server renders each running job's elapsed time as data-elapsed (seconds at render);
// this ticks it every second between status polls, which answer 304 while nothing else changed.
(function () {
  "use strict";
  const seen = new WeakMap();
  function format(total) {
    total = Math.max(0, Math.floor(total));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
  }
  function tick() {
    const now = performance.now();
    for (const clock of document.querySelectorAll("[data-elapsed][data-live]")) {
      if (!seen.has(clock)) seen.set(clock, now);
      const seconds = Number(clock.dataset.elapsed) + (now - seen.get(clock)) / 1000;
      const text = format(seconds);
      if (clock.textContent !== text) clock.textContent = text;
    }
  }
  setInterval(tick, 1000);
})();
