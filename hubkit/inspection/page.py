"""``index.html``: one self-contained page to read an inspection in a browser.

No network: styles and script are inline and a Content-Security-Policy forbids every fetch. Tokens are
tinted by round-trip cosine; hovering or clicking one shows its explanation in the side panel. All
per-token data sits in one JSON block and the handlers are delegated, so a few thousand tokens stay fast.
"""

from __future__ import annotations

import html
import json

from hubkit.inspection.record import InspectionData as Inspection

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;display:flex;height:100vh}
main{flex:1;overflow:auto;padding:12px 16px}
aside{width:34%;min-width:260px;border-left:1px solid #ccc;padding:12px;overflow:auto;background:#fafafa}
#text{font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.7;border:1px solid #ddd;padding:8px}
.tok{border-radius:2px;cursor:pointer}
.tok.sel{outline:2px solid #000}
.plain{color:#888}
#strip{display:flex;height:22px;margin:8px 0;border:1px solid #ddd}
#strip span{flex:1;min-width:1px;cursor:pointer}
table{border-collapse:collapse;font-size:12px;width:100%}
th{cursor:pointer;background:#eee;position:sticky;top:0}
th,td{border:1px solid #ddd;padding:2px 4px;vertical-align:top}
td.x{max-width:420px;white-space:pre-wrap}
#detail pre{white-space:pre-wrap;font-family:inherit}
.meta{font-size:12px;color:#444}
"""

SCRIPT = """
const D=JSON.parse(document.getElementById('data').textContent);
const byIndex=new Map(D.rows.map(r=>[r.index,r]));
const panel=document.getElementById('detail');
let selected=null;
function f(x,d){return x===null||x===undefined?'n/a':Number(x).toFixed(d)}
function show(i){
  const r=byIndex.get(i); if(!r) return;
  let s='<h3>['+r.index+'] '+r.role+' <code></code></h3>';
  s+='<div class="meta">cos '+f(r.cos,3)+' · mse_nrm '+f(r.mse_nrm,3)+' · fve_nrm '+f(r.fve_nrm,3)+' · ||v|| '+f(r.norm,1)+' · '+r.status;
  if(r.spliced){s+='<br>spliced CE orig '+f(r.spliced.ce_original,3)+' · recon '+f(r.spliced.ce_reconstruction,3)+' · KL '+f(r.spliced.kl_reconstruction,4);}
  s+='</div><pre class="explanation"></pre>';
  panel.innerHTML=s;
  panel.querySelector('code').textContent=JSON.stringify(r.token);
  panel.querySelector('pre').textContent=r.explanation||'(empty)';
}
function pick(e){
  const t=e.target.closest('[data-i]'); if(!t) return;
  const i=Number(t.dataset.i); show(i);
  if(e.type==='click'){
    if(selected) selected.classList.remove('sel');
    selected=document.getElementById('t'+i); if(selected){selected.classList.add('sel');}
  }
}
for(const id of ['text','strip','rows']){
  const el=document.getElementById(id);
  el.addEventListener('mouseover',pick); el.addEventListener('click',pick);
}
document.getElementById('head').addEventListener('click',e=>{
  const th=e.target.closest('th'); if(!th) return;
  const k=th.dataset.k, tb=document.getElementById('rows');
  const dir=th.dataset.dir==='asc'?'desc':'asc'; th.dataset.dir=dir;
  const rows=Array.from(tb.rows);
  const val=tr=>{const v=tr.cells[th.cellIndex].dataset.v; return v===undefined?tr.cells[th.cellIndex].textContent:v};
  const num=rows.every(tr=>{const v=val(tr); return v!==''&&!isNaN(Number(v))});
  rows.sort((a,b)=>{const x=val(a),y=val(b); const c=num?Number(x)-Number(y):String(x).localeCompare(String(y)); return dir==='asc'?c:-c});
  const frag=document.createDocumentFragment(); rows.forEach(r=>frag.appendChild(r)); tb.appendChild(frag);
});
"""


def tint(cos: float) -> str:
    """Background colour for a cosine: red at 0 (or below) through yellow to green at 1."""
    c = min(1.0, max(0.0, cos))
    return f"hsl({120 * c:.0f},75%,78%)"


def _num(x: float | None, digits: int) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _table(records: list[dict], spliced: bool) -> str:
    cols = [("index", "#"), ("token", "token"), ("role", "role"), ("norm", "||v||"), ("cos", "cos")]
    cols += [("mse_nrm", "mse_nrm"), ("fve_nrm", "fve_nrm")]
    if spliced:
        cols += [("ce_reconstruction", "CE recon"), ("kl_reconstruction", "KL")]
    cols += [("status", "status"), ("explanation", "explanation")]
    head = "".join(f'<th data-k="{k}">{html.escape(label)}</th>' for k, label in cols)
    body = []
    for r in records:
        values = {**r, **(r.get("spliced") or {})}
        cells = []
        for k, _ in cols:
            v = values.get(k)
            if isinstance(v, float):
                cells.append(f'<td data-v="{v!r}">{_num(v, 1 if k == "norm" else 3)}</td>')
            elif k == "index":
                cells.append(f'<td data-v="{v}">{v}</td>')
            elif k == "explanation":
                cells.append(f'<td class="x">{html.escape(v or "")}</td>')
            elif v is None:
                cells.append('<td data-v="">n/a</td>')
            else:
                cells.append(f"<td>{html.escape(repr(v) if k == 'token' else str(v))}</td>")
        body.append(f'<tr data-i="{r["index"]}">{"".join(cells)}</tr>')
    return f'<table><thead id="head"><tr>{head}</tr></thead><tbody id="rows">{"".join(body)}</tbody></table>'


def render_page(ins: Inspection) -> str:
    records = ins.records()
    by_pos = {r["index"]: r for r in records}
    pieces = []
    for p, text in enumerate(ins.token_texts):
        r = by_pos.get(p)
        esc = html.escape(text)
        if r is None:
            pieces.append(f'<span class="plain">{esc}</span>')
        else:
            pieces.append(
                f'<span class="tok" id="t{p}" data-i="{p}" style="background:{tint(r["cos"])}">{esc}</span>'
            )
    strip = "".join(
        f'<span data-i="{r["index"]}" style="background:{tint(r["cos"])}" title="{r["index"]}"></span>'
        for r in records
    )
    s = ins.summary()
    data = json.dumps({"rows": records}, ensure_ascii=False).replace("</", "<\\/")
    spliced = ins.spliced is not None
    sp_line = ""
    if spliced and ins.spliced.frac_recovered is not None:
        sp_line = f" · spliced loss recovered {ins.spliced.frac_recovered:.3f}"
    summary = (
        f"{html.escape(str(s['base_model']))} · layer {s['layer']} · {s['positions']} of {s['n_tokens']} tokens · "
        f"mean cos {s['mean_cos']:.3f} · mean fve_nrm {_num(s['mean_fve_nrm'], 3)} (B {_num(s['baseline_b'], 4)}, "
        f"{html.escape(s['baseline_source'])}){sp_line}"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>NLA inspection — layer {s["layer"]}</title>
<style>{STYLE}</style></head>
<body><main>
<h2>NLA inspection</h2>
<p class="meta">{summary}</p>
<p class="meta">Tokens tinted by round-trip cosine (red 0 → green 1); hover or click a token for its explanation.</p>
<div id="text">{"".join(pieces)}</div>
<div id="strip" aria-label="per-token cosine">{strip}</div>
{_table(records, spliced)}
</main>
<aside id="detail"><p>Hover or click a token.</p></aside>
<script type="application/json" id="data">{data}</script>
<script>{SCRIPT}</script>
</body></html>
"""
