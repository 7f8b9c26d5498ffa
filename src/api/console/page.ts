import type { InstanceOverview, OpsOverview, RatePoint } from '../../services/ops-dashboard.js';
import { UPCOMING_DAYS } from '../../services/ops-dashboard.js';
import type { KeyBreakdown, UpcomingByInstance, UpcomingEvent, VersionUsage } from '../../store/dashboard.js';
import { type Html, html } from './html.js';

/** Quota use at which the bar turns amber, then red. */
export const QUOTA_WARN = 0.8;
export const QUOTA_CRITICAL = 0.95;

const layout = (title: string, body: Html): string =>
  html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/console/console.css"></head>
<body>${body}</body></html>
`.text;

/** The sign-in form; `refusal` says why the last attempt was refused. Nothing secret is ever echoed. */
export function signInPage(refusal?: string): string {
  return layout(
    'hsm-kms console: sign in',
    html`<main class="sign-in">
<h1>hsm-kms operations console</h1>
${refusal ? html`<p class="refusal" role="alert" id="refusal">${refusal}</p>` : ''}
<form method="post" action="/console/sign-in" autocomplete="off">
<label>Access key id <input name="accessKeyId" id="accessKeyId" required maxlength="128" autocomplete="username"></label>
<label>Access key secret <input name="accessKeySecret" id="accessKeySecret" type="password" required maxlength="256" autocomplete="current-password"></label>
<button type="submit" id="sign-in">Sign in</button>
</form>
<p class="hint">Admin access keys only (<code>kms access-key create --role admin</code>).</p>
</main>`,
  );
}

/** The whole dashboard page: header, the panels (also served alone for the refresh), the script. */
export function dashboardPage(overview: OpsOverview, accessKeyId: string): string {
  return layout(
    'hsm-kms console',
    html`<header><h1>hsm-kms operations</h1>
<span class="who">Signed in as <code id="signed-in-as">${accessKeyId}</code></span>
<span class="refresh">Updated <time id="updated">${overview.generatedAt.toISOString()}</time> · refreshes every 10 s</span>
<form method="post" action="/console/sign-out"><button type="submit" id="sign-out">Sign out</button></form></header>
<main id="panels">${panels(overview)}</main>
<script src="/console/console.js"></script>`,
  );
}

/** The panels alone (what the script swaps in every 10 s). */
export function panelsFragment(overview: OpsOverview): string {
  return panels(overview).text;
}

function panels(o: OpsOverview): Html {
  return html`<div id="generated" data-at="${o.generatedAt.toISOString()}"></div>
<section class="instances">${o.instances.map(instancePanel)}${o.defaultKeys ? defaultKeysPanel(o.defaultKeys) : ''}</section>
<section class="deployment">
<div class="panel" id="request-rate"><h2>Requests, last hour (all processes)</h2>${rateChart(o.requestRate, 'requests/s')}</div>
${hsmPanel(o)}
${queuesPanel(o)}
${usagePanel(o)}
${auditPanel(o)}
</section>`;
}

function quotaLevel(ratio: number): 'ok' | 'warn' | 'critical' {
  return ratio >= QUOTA_CRITICAL ? 'critical' : ratio >= QUOTA_WARN ? 'warn' : 'ok';
}

function instancePanel(i: InstanceOverview): Html {
  const ratio = i.instance.keyQuota > 0 ? i.versionsUsed / i.instance.keyQuota : i.versionsUsed > 0 ? 1 : 0;
  const level = quotaLevel(ratio);
  const pct = Math.round(ratio * 1000) / 10;
  return html`<article class="panel instance" data-instance-id="${i.instance.id}">
<h2>${i.instance.name === i.instance.id ? html`<code>${i.instance.id}</code> <small>` : html`${i.instance.name} <small>${i.instance.id} · `}${i.instance.type} · ${i.instance.keyStorage}</small></h2>
<div class="quota quota-${level}" data-level="${level}">
<p>Key quota: <span class="quota-used">${i.versionsUsed}</span> / <span class="quota-total">${i.instance.keyQuota}</span> versions (<span class="quota-percent">${pct}</span> %)</p>
<svg class="bar" viewBox="0 0 100 6" preserveAspectRatio="none" role="img" aria-label="${pct} % of the key quota used"><rect class="bar-back" x="0" y="0" width="100" height="6"></rect><rect class="bar-fill" x="0" y="0" width="${Math.min(100, pct)}" height="6"></rect></svg>
<p>QPS: <span class="qps-used">${i.qpsUsed}</span> used over the last second of a spec of <span class="qps-spec">${i.instance.qps}</span></p>
</div>
${breakdown(i.keys)}
${upcomingList(i.upcoming)}
<h3>Crypto calls, last hour</h3>${rateChart(i.rate, 'calls/s')}
</article>`;
}

function defaultKeysPanel(d: NonNullable<OpsOverview['defaultKeys']>): Html {
  return html`<article class="panel instance" data-instance-id=""><h2>Default keys <small>(no instance)</small></h2>${breakdown(d.keys)}${upcomingList(d.upcoming)}</article>`;
}

function counts(title: string, cls: string, values: Record<string, number>): Html {
  const entries = Object.entries(values).sort(([a], [b]) => a.localeCompare(b));
  return html`<div class="counts ${cls}"><h4>${title}</h4>${entries.length === 0 ? html`<p class="none">no keys</p>` : html`<dl>${entries.map(([k, n]) => html`<dt>${k}</dt><dd data-value="${k}">${n}</dd>`)}</dl>`}</div>`;
}

function breakdown(k: KeyBreakdown): Html {
  return html`<h3>Keys</h3><div class="breakdown">${counts('State', 'by-state', k.byState)}${counts('Origin', 'by-origin', k.byOrigin)}${counts('Protection level', 'by-protection', k.byProtectionLevel)}</div>`;
}

const KIND_LABEL: Record<UpcomingEvent['kind'], string> = { rotation: 'Automatic rotation', materialExpiry: 'Material expiry', deletion: 'Scheduled deletion' };

function upcomingList(u: UpcomingByInstance): Html {
  const shown = u.first.length;
  const total = u.counts.rotation + u.counts.materialExpiry + u.counts.deletion;
  return html`<h3>Next ${UPCOMING_DAYS} days</h3>
<p class="upcoming-counts"><span data-kind="rotation">${u.counts.rotation} rotations</span> · <span data-kind="materialExpiry">${u.counts.materialExpiry} material expiries</span> · <span data-kind="deletion">${u.counts.deletion} deletions</span>${shown < total ? html` <small>(the soonest ${shown} listed)</small>` : ''}</p>
${shown === 0 ? html`<p class="none">Nothing scheduled.</p>` : html`<table class="upcoming"><thead><tr><th>When</th><th>What</th><th>Key</th><th>Version</th></tr></thead><tbody>${u.first.map(
    (e) => html`<tr data-kind="${e.kind}" data-key-id="${e.keyId}"><td><time>${e.at.toISOString()}</time></td><td>${KIND_LABEL[e.kind]}</td><td><code>${e.keyId}</code></td><td><code>${e.versionId ?? ''}</code></td></tr>`,
  )}</tbody></table>`}`;
}

/** A small line chart (inline SVG, no script): calls per second per minute, throttled in red. */
export function rateChart(points: readonly RatePoint[], unit: string): Html {
  const width = 360;
  const height = 80;
  const peak = Math.max(0, ...points.map((p) => p.requests), ...points.map((p) => p.throttled));
  const max = Math.max(1, peak);
  const n = Math.max(points.length - 1, 1);
  const line = (pick: (p: RatePoint) => number) =>
    points.map((p, i) => `${((i / n) * width).toFixed(1)},${(height - (pick(p) / max) * (height - 4)).toFixed(1)}`).join(' ');
  const total = points.reduce((s, p) => s + p.requests * 60, 0);
  const throttled = points.reduce((s, p) => s + p.throttled * 60, 0);
  return html`<figure class="chart"><svg viewBox="0 0 ${width} ${height}" preserveAspectRatio="none" role="img" aria-label="rate over the last hour">
<rect class="chart-back" x="0" y="0" width="${width}" height="${height}"></rect>
<polyline class="line-requests" points="${line((p) => p.requests)}"></polyline>
<polyline class="line-throttled" points="${line((p) => p.throttled)}"></polyline></svg>
<figcaption>peak ${Math.round(peak * 10) / 10} ${unit} (per-minute average) · <span class="rate-total">${Math.round(total)}</span> in the hour, <span class="rate-throttled">${Math.round(throttled)}</span> throttled (red) · 60 min ago → now</figcaption></figure>`;
}

function hsmPanel(o: OpsOverview): Html {
  const h = o.hsm;
  const s = h.sessions;
  const caps = Object.entries(h.capabilities);
  return html`<div class="panel" id="hsm"><h2>HSM</h2>
<p>Token <code>${h.tokenLabel}</code> · ${h.manufacturer} ${h.model}</p>
<p>Probe: <span class="probe probe-${h.probeOk ? 'ok' : 'failed'}" id="hsm-probe">${h.probeOk ? 'answering' : 'FAILING'}</span> (${h.probeMs} ms) · master wrapping key: ${h.masterWrappingKey ? 'present' : 'absent'}</p>
<p>Session pool (this process): <span id="hsm-sessions-in-use">${s.inUse}</span> in use of ${s.size} (${s.open} open, ${s.waiting} waiting)</p>
<details><summary>Capabilities (${caps.filter(([, v]) => v).length}/${caps.length})</summary><ul>${caps.map(([k, v]) => html`<li class="${v ? 'yes' : 'no'}">${k}: ${v ? 'yes' : 'no'}</li>`)}</ul></details>
</div>`;
}

function queuesPanel(o: OpsOverview): Html {
  return html`<div class="panel" id="jobs"><h2>Job queues</h2><table><thead><tr><th>Queue</th><th>Waiting</th><th>Active</th><th>Delayed</th><th>Failed</th><th>Lag</th></tr></thead><tbody>${o.queues.map(
    (q) => html`<tr data-queue="${q.name}"><td>${q.name}</td><td>${q.waiting}</td><td>${q.active}</td><td>${q.delayed}</td><td class="${q.failed > 0 ? 'bad' : ''}">${q.failed}</td><td>${q.lagSeconds === undefined ? 'Redis?' : `${Math.round(q.lagSeconds)} s`}</td></tr>`,
  )}</tbody></table></div>`;
}

function usageRows(rows: readonly VersionUsage[]): Html {
  return html`${rows.map((v) => html`<tr><td><code>${v.keyId}</code></td><td><code>${v.versionId}</code></td><td>${v.instanceId}</td><td>${v.encryptionCount.toLocaleString('en')}</td></tr>`)}`;
}

function usagePanel(o: OpsOverview): Html {
  const head = html`<thead><tr><th>Key</th><th>Version</th><th>Instance</th><th>Encryptions</th></tr></thead>`;
  return html`<div class="panel" id="usage"><h2>Usage per key version</h2>
${o.versionsPastWarning.length > 0 ? html`<p class="bad" id="past-warning">${o.versionsPastWarning.length} version(s) past 2^31 encryptions: rotate their keys (AES-GCM random-IV bound 2^32).</p><table>${head}<tbody>${usageRows(o.versionsPastWarning)}</tbody></table>` : html`<p>No version is past 2^31 encryptions.</p>`}
<h3>Most encryptions</h3>${o.topVersions.length === 0 ? html`<p class="none">No encryptions counted yet.</p>` : html`<table>${head}<tbody>${usageRows(o.topVersions)}</tbody></table>`}
</div>`;
}

function auditPanel(o: OpsOverview): Html {
  return html`<div class="panel wide" id="audit"><h2>Recent audit events</h2><table><thead><tr><th>When</th><th>Action</th><th>Result</th><th>Key</th><th>Access key</th><th>Source</th></tr></thead><tbody>${o.recentAudit.map(
    (e) => html`<tr><td><time>${e.at.toISOString()}</time></td><td>${e.action}</td><td class="${e.resultCode === 'OK' ? '' : 'bad'}">${e.resultCode}</td><td><code>${e.keyId ?? ''}</code></td><td><code>${e.accessKeyId ?? ''}</code></td><td>${e.sourceIp ?? ''}</td></tr>`,
  )}</tbody></table></div>`;
}
