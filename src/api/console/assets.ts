/**
 * The console's only script and stylesheet, served from /console (the CSP allows nothing
 * inline). The script re-fetches the server-rendered panels every 10 s; a signed-out
 * session (401) goes back to the sign-in page.
 */
export const CONSOLE_SCRIPT = `'use strict';
(function () {
  var REFRESH_MS = 10000;
  function refresh() {
    fetch('/console/panels', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (res) {
        if (res.status === 401) { window.location.assign('/console'); return null; }
        return res.ok ? res.text() : null;
      })
      .then(function (text) {
        if (text === null || text === undefined) return;
        var doc = new DOMParser().parseFromString('<main>' + text + '</main>', 'text/html');
        var main = document.getElementById('panels');
        var fresh = doc.querySelector('main');
        if (!main || !fresh) return;
        main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
        var generated = document.getElementById('generated');
        var updated = document.getElementById('updated');
        if (generated && updated) updated.textContent = generated.getAttribute('data-at');
        document.body.setAttribute('data-refreshes', String(Number(document.body.getAttribute('data-refreshes') || '0') + 1));
      })
      .catch(function () { /* the next tick tries again */ })
      .finally(function () { setTimeout(refresh, REFRESH_MS); });
  }
  setTimeout(refresh, REFRESH_MS);
})();
`;

export const CONSOLE_STYLES = `
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f4f6f9; font-size: 14px; }
body { margin: 0; }
header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; background: #1d2330; color: #fff; flex-wrap: wrap; }
header h1 { font-size: 1.1rem; margin: 0; }
header form { margin-left: auto; }
code { font-family: ui-monospace, monospace; font-size: .9em; }
main { padding: 1rem 1.2rem; }
.sign-in { max-width: 26rem; margin: 4rem auto; background: #fff; padding: 1.5rem; border-radius: 6px; }
.sign-in label { display: block; margin: .8rem 0; }
.sign-in input { display: block; width: 100%; box-sizing: border-box; padding: .4rem; }
.refusal { background: #fdecea; color: #8a1c12; padding: .6rem; border-radius: 4px; }
.instances, .deployment { display: grid; grid-template-columns: repeat(auto-fill, minmax(24rem, 1fr)); gap: 1rem; margin-bottom: 1rem; }
.panel { background: #fff; border-radius: 6px; padding: .8rem 1rem; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.panel.wide { grid-column: 1 / -1; }
.panel h2 { font-size: 1rem; margin: 0 0 .5rem; }
.panel h2 small { color: #667; font-weight: normal; }
.panel h3 { font-size: .9rem; margin: .8rem 0 .3rem; }
.panel h4 { font-size: .8rem; margin: 0 0 .2rem; color: #556; }
.bar { width: 100%; height: 12px; display: block; }
.bar-back { fill: #e4e8ee; }
.quota-ok .bar-fill { fill: #2f9e57; }
.quota-warn .bar-fill { fill: #e0a100; }
.quota-critical .bar-fill { fill: #d33a2c; }
.quota-critical p:first-child { color: #b02a1e; font-weight: bold; }
.breakdown { display: flex; gap: 1.5rem; }
dl { display: grid; grid-template-columns: auto auto; gap: 0 .6rem; margin: 0; }
dd { margin: 0; text-align: right; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { text-align: left; padding: .15rem .4rem; border-bottom: 1px solid #eef0f3; }
.chart svg { width: 100%; height: 80px; display: block; }
.chart figcaption { font-size: .75rem; color: #667; }
.chart { margin: 0; }
.chart-back { fill: #f8f9fb; }
.line-requests { fill: none; stroke: #2763c4; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.line-throttled { fill: none; stroke: #d33a2c; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.probe-ok { color: #2f9e57; font-weight: bold; }
.probe-failed, .bad { color: #d33a2c; font-weight: bold; }
.none, .hint { color: #778; }
li.no { color: #99a; }
`;
