"""index.html renders summary.md's text as HTML (lists, bold, code, links; every other character
escaped) and fits its tables to the page: checked on the report of a judge run on a catalogue fault,
and, where chromium is installed, in a headless browser."""

import html
import json
import re
import shutil
import subprocess
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from reference.cli import main
from reference.report.summary import inline_html, markdown_html, write_summary

HOSTILE = "<script>alert('x')</script> & <b>bold</b>"
STAMP = "- run `abc123`, started now\n- judged: `a&b.py`, SHA-256 `00ff`\n- sandbox: **process**; limits: 60 s per case"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A judge run's folder (max pool routing to every tied maximum; autograd and finite differences),
    with one failing row's note made hostile and summary.md / index.html written again."""
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "impl.py").write_text(textwrap.dedent("""
        from scratch_cnn import *  # noqa
        from reference.layers.maxpool2d import MaxPoolTiesToEveryMax as MaxPool2D  # noqa
    """))  # fmt: skip
    out = tmp / "out"
    code = main(["judge", "--impl", str(tmp / "impl.py"), "--quick", "--layers", "MaxPool2D",
                 "--judges", "autograd,finite_diff", "--out", str(out)])  # fmt: skip
    assert code == 1
    rows = pd.read_csv(out / "autograd.csv")
    first = rows.index[rows["status"] == "fail"][0]
    rows.loc[first, "note"] = HOSTILE
    rows.to_csv(out / "autograd.csv", index=False)
    write_summary(out, "FAIL", "Judged: a&b.py <i>", impl_name="a&b.py", stamp=STAMP)
    return out


class Text(HTMLParser):
    """The page's tags and visible text."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self.paragraphs = [], [], []
        self._in_p = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "p":
            self._in_p = True
            self.paragraphs.append("")

    def handle_endtag(self, tag):
        if tag == "p":
            self._in_p = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_p:
            self.paragraphs[-1] += data


def parsed(page):
    p = Text()
    p.feed(page)
    return p


def test_the_page_renders_summary_markdown_as_html_and_escapes_everything_else(report):
    page = (report / "index.html").read_text()
    doc = parsed(page)
    text = "".join(doc.text)
    assert "script" not in doc.tags and "i" not in doc.tags and "b" not in doc.tags  # the hostile markup is text
    assert "<script>alert('x')</script> & <b>bold</b>" in text  # shown as typed
    assert html.escape(HOSTILE) in page
    assert "Judged: a&b.py <i>" in text
    assert "**" not in text and "`" not in text  # bold and code are rendered, not typed
    assert not any(p.lstrip().startswith("- ") for p in doc.paragraphs)  # lists are lists
    assert re.search(r"<li><strong>MaxPool2D</strong>: ", page)
    assert re.search(r"<code>python -m reference judge --impl \S*a&amp;b.py\S* --case ", page)
    assert "<li>sandbox: <strong>process</strong>" in page and "<code>abc123</code>" in page
    assert '<p class="verdict">FAIL</p>' in page
    summary = (report / "summary.md").read_text()
    assert "- **MaxPool2D**: " in summary  # summary.md keeps its Markdown


def test_the_converter_on_its_own():
    assert inline_html("a `<b>` **c & d** [e](x.png) _(f)_ snake_case") == (
        'a <code>&lt;b&gt;</code> <strong>c &amp; d</strong> <a href="x.png">e</a> <em>(f)</em> snake_case'
    )
    assert inline_html("[x](javascript:alert(1))") == '<a href="#">x</a>)'  # no script URLs
    assert markdown_html("- one\n  more\n- `two`\n\npara **b**") == (
        "<ul><li>one more</li><li><code>two</code></li></ul>\n<p>para <strong>b</strong></p>"
    )


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    return found


PROBE = """<script>
const iw = window.innerWidth, doc = document.documentElement.scrollWidth;
const wide = [...document.querySelectorAll('.table-wrap')].filter(d => d.scrollWidth > d.clientWidth + 1)
  .map(d => (d.previousElementSibling || {}).textContent);
const imgs = [...document.images].filter(i => i.getBoundingClientRect().right > iw + 1).length;
const pre = document.createElement('pre');
pre.id = 'fit';
pre.textContent = JSON.stringify({iw, doc, wide, imgs, n_images: document.images.length});
document.body.appendChild(pre);
</script>"""


def browse(browser, tmp_path, *args):
    profile = tmp_path / "profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
           "--window-size=1280,900", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_the_page_fits_a_1280_pixel_window_in_a_headless_browser(report, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed: the page's fit in a browser is not checked here")
    page = (report / "index.html").read_text()
    probe = tmp_path / "probe.html"  # a copy with a measuring script; the report itself has none
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    done = browse(browser, tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="fit">(.*?)</pre>', done.stdout)
    assert found, f"chromium printed no measurement (exit {done.returncode}): {done.stderr[-2000:]}"
    fit = json.loads(html.unescape(found.group(1)))
    assert fit["iw"] == 1280
    assert fit["doc"] <= fit["iw"], f"the page is {fit['doc']} px wide in a {fit['iw']} px window"
    assert fit["wide"] == [], f"tables wider than the page (scrolled in their box): {fit['wide']}"
    assert fit["n_images"] >= 1 and fit["imgs"] == 0  # the heat map is there and inside the page
    shot = tmp_path / "page.png"
    browse(browser, tmp_path, f"--screenshot={shot}", (report / "index.html").as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(data[16:20], "big") == 1280
