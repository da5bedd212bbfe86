"""A self-contained API reference page rendered from /openapi.json (no CDN: works offline)."""

from __future__ import annotations

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>softswitch API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem;max-width:70rem;color:#111}
h1{font-size:1.6rem} code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:.1rem .3rem}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;
vertical-align:top} .m{font-weight:bold;font-family:monospace} pre{white-space:pre-wrap;margin:0}
</style></head><body>
<h1>softswitch API</h1>
<p id="intro">Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>. Errors are JSON
<code>{"error": ..., "detail": ...}</code>. The machine-readable description is
<a href="/openapi.json">/openapi.json</a>.</p>
<table><thead><tr><th>Method</th><th>Path</th><th>What</th><th>Who</th><th>Body</th></tr></thead>
<tbody id="ops"></tbody></table>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const tbody = document.getElementById('ops');
  const schemas = (doc.components || {}).schemas || {};
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const tr = document.createElement('tr');
      const body = op.requestBody ? op.requestBody.content['application/json'].schema.$ref.split('/').pop() : '';
      const cells = [method.toUpperCase(), path, op.summary || '', op.description || '',
                     body ? JSON.stringify(schemas[body].properties, null, 1) : ''];
      cells.forEach((text, i) => {
        const td = document.createElement('td');
        if (i === 4) { const pre = document.createElement('pre'); pre.textContent = text; td.appendChild(pre); }
        else { td.textContent = text; }
        if (i === 0) td.className = 'm';
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    }
  }
});
</script></body></html>
"""


def docs_page() -> str:
    """The HTML of /docs."""
    return _PAGE
